"""Shared fixtures of the ROS tests: a small untrained checkpoint (the plumbing does not need trained weights)."""
from __future__ import annotations

from pathlib import Path

import pytest


def build_small_checkpoint(path: Path, seed: int = 0) -> Path:
    """An untrained MobileNetV2 HLE model with narrow ASPP / decoder, saved as an HLE checkpoint."""
    import torch

    from hle_core.config import HLEConfig
    from hle_core.model import build_model, save_checkpoint

    cfg = HLEConfig()
    cfg.model.backbone = "mobilenet_v2"
    cfg.model.pretrained = None
    cfg.model.aspp_channels = 16
    cfg.model.decoder_channels = 16
    cfg.model.low_level_channels = 8
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model(cfg))


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_checkpoint(tmp_path_factory.mktemp("hle_model") / "small.pt")
