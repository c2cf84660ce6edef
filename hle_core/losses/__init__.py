"""Losses of the paper (§3.2-3.4, eq. 1-16): Lovász losses, the hierarchical Lovász loss, the Table-6 ablations."""
from .baselines import (ae_pull, ae_push, associative_embedding_loss, group_mean_embeddings,
                        instance_binary_cross_entropy, semantic_cross_entropy)
from .hierarchical import HierarchicalLovaszLoss
from .terms import (LOSS_TERMS, InstanceLayout, InstanceStatistics, LossInputError, batch_class_means,
                    class_mean_loss, instance_layout, instance_lovasz_loss, instance_rows, instance_scores,
                    instance_statistics, instance_variance_loss, seed_loss, semantic_lovasz_loss, semantic_scores)
from .lovasz import (lovasz_binary, lovasz_binary_rows, lovasz_grad, lovasz_hinge, lovasz_hinge_flat,
                     lovasz_softmax, lovasz_softmax_flat)
from .variants import INSTANCE_TERMS, SEMANTIC_TERMS, VariantBatch, is_paper_loss, table6_loss

__all__ = [
    # eq. 3-6
    "lovasz_grad", "lovasz_hinge", "lovasz_hinge_flat", "lovasz_binary", "lovasz_binary_rows",
    "lovasz_softmax", "lovasz_softmax_flat",
    # eq. 7-16
    "HierarchicalLovaszLoss", "LossInputError", "LOSS_TERMS", "InstanceLayout", "InstanceStatistics",
    "instance_layout", "instance_statistics", "instance_scores", "instance_rows", "instance_lovasz_loss",
    "semantic_scores", "semantic_lovasz_loss", "seed_loss", "instance_variance_loss", "batch_class_means",
    "class_mean_loss",
    # Table 6: the variants and their eq. 1-2 and cross-entropy terms
    "is_paper_loss", "table6_loss", "VariantBatch", "INSTANCE_TERMS", "SEMANTIC_TERMS",
    "group_mean_embeddings", "ae_pull", "ae_push", "associative_embedding_loss", "semantic_cross_entropy",
    "instance_binary_cross_entropy",
]
