"""The HLE network (paper §3, Fig. 2), its backbones, Thomson initialisation (eq. 17) and checkpoints."""
from .backbones import PretrainedWeightsError, build_backbone, find_packaged_mobilenet_weights
from .checkpoint import CheckpointError, load_checkpoint, load_model, release_checkpoint, save_checkpoint
from .network import OUTPUT_NAMES, HLENet, build_model
from .thomson import min_pairwise_angle, thomson_energy, thomson_init

__all__ = [
    "OUTPUT_NAMES", "HLENet", "build_model", "build_backbone", "find_packaged_mobilenet_weights",
    "PretrainedWeightsError", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model",
    "release_checkpoint",
    "thomson_init", "thomson_energy", "min_pairwise_angle",
]
