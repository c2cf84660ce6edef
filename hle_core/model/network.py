"""The HLE network (paper §3, Fig. 2): DeepLabV3+ predicting, per pixel, the hierarchical embedding e_i on
the unit hypersphere, the instance variance σ_i, the spatial variance σ_spatial,i and the seed s_i; and,
per semantic class, the persistent mean μ̂_k (eq. 10, 15) and the learned variance σ_k (eq. 9).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from ..config import HLEConfig
from .backbones import build_backbone
from .thomson import thomson_init

__all__ = ["HLENet", "build_model", "OUTPUT_NAMES"]

#: Names of the per-pixel outputs, in the order an exported graph lists them.
OUTPUT_NAMES = ("embedding", "sigma", "sigma_spatial", "seed")


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabV3+ decoder (Chen et al. 2018): ASPP features upsampled ×4 and fused with a low-level skip."""

    def __init__(self, low_in: int, low_channels: int, aspp_channels: int, channels: int) -> None:
        super().__init__()
        self.project_low = _conv_bn_relu(low_in, low_channels, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(aspp_channels + low_channels, channels, 3),
                                  _conv_bn_relu(channels, channels, 3))

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat((up, self.project_low(low)), dim=1))   # B x C x H/4 x W/4


class HLENet(nn.Module):
    """DeepLabV3+ with the HLE head. See ``docs/ARCHITECTURE.md`` for the output contract."""

    #: σ are produced as σ_init · exp(clamp(raw)); the clamp keeps exp finite in FP16 engines.
    LOG_SIGMA_CLAMP = 8.0

    def __init__(self, cfg: HLEConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        m = cfg.model
        num_classes = len(cfg.classes)
        self.embedding_dim = m.embedding_dim
        self.split_embedding = cfg.loss.split_embedding
        self.backbone = build_backbone(m.backbone, m.output_stride, m.pretrained)
        rates = (6, 12, 18) if m.output_stride == 16 else (12, 24, 36)
        self.aspp = ASPP(self.backbone.high_channels, rates, m.aspp_channels)
        self.decoder = DeepLabV3PlusDecoder(self.backbone.low_channels, m.low_level_channels,
                                            m.aspp_channels, m.decoder_channels)
        # head: D embedding channels + σ + σ_spatial + seed (+ K semantic logits in the Table-6 variant)
        self.num_semantic = num_classes if m.separate_semantic_branch else 0
        self.head = nn.Conv2d(m.decoder_channels, m.embedding_dim + 3 + self.num_semantic, 1)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.log_sigma_init = math.log(m.sigma_init)
        self.log_sigma_spatial_init = math.log(m.sigma_spatial_init)

        # eq. 10 / 15: persistent class means μ̂_k (K x D); eq. 9: class variances σ_k = exp(log σ_k)
        d_sem = m.embedding_dim // 2 if self.split_embedding else m.embedding_dim
        means = (thomson_init(num_classes, d_sem) if m.thomson_init
                 else F.normalize(torch.randn(num_classes, d_sem), dim=1))
        if self.split_embedding:   # semantic means live in the first half of the embedding (Table 6)
            means = torch.cat((means, torch.zeros(num_classes, m.embedding_dim - d_sem)), dim=1)
        self.class_means = nn.Parameter(means)
        self.log_class_sigma = nn.Parameter(torch.full((num_classes,), math.log(m.class_sigma_init)))

    @property
    def class_sigma(self) -> torch.Tensor:
        """σ_k of eq. 9, shape ``(K,)``, positive."""
        return self.log_class_sigma.exp()

    def decode_params(self) -> dict[str, torch.Tensor]:
        """What the panoptic decoder needs beyond the per-pixel maps: unit-norm μ̂_k ``(K, D)`` and σ_k ``(K,)``."""
        return {"class_means": F.normalize(self.class_means.detach(), dim=1), "class_sigma": self.class_sigma.detach()}

    def _normalise_embedding(self, raw: torch.Tensor) -> torch.Tensor:
        if not self.split_embedding:
            return F.normalize(raw, dim=1)
        half = raw.shape[1] // 2
        # each half on its own sphere, scaled so the whole vector stays unit norm
        return torch.cat((F.normalize(raw[:, :half], dim=1), F.normalize(raw[:, half:], dim=1)), dim=1) / math.sqrt(2.0)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: images ``(B, 3, H, W)`` normalised float, H and W multiples of 32.

        Returns the dict of ``OUTPUT_NAMES`` (and ``semantic_logits`` in the separate-branch variant), all at
        input resolution.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"HLENet expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        size = images.shape[-2:]
        low, high = self.backbone(images)
        feats = self.decoder(self.aspp(high), low)
        raw = self.head(feats)                                         # B x (D+3[+K]) x H/4 x W/4
        raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        d = self.embedding_dim
        c = self.LOG_SIGMA_CLAMP
        out = {
            "embedding": self._normalise_embedding(raw[:, :d]),                                  # B x D x H x W
            "sigma": torch.exp(raw[:, d:d + 1].clamp(-c, c) + self.log_sigma_init),             # B x 1 x H x W
            "sigma_spatial": torch.exp(raw[:, d + 1:d + 2].clamp(-c, c) + self.log_sigma_spatial_init),
            "seed": torch.sigmoid(raw[:, d + 2:d + 3]),                                           # B x 1 x H x W
        }
        if self.num_semantic:
            out["semantic_logits"] = raw[:, d + 3:]                                               # B x K x H x W
        return out


def build_model(cfg: HLEConfig | None = None) -> HLENet:
    """Build an :class:`HLENet` from a (validated) config; defaults when ``cfg`` is None."""
    return HLENet(cfg if cfg is not None else HLEConfig())
