"""Shared fixtures of the core tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained MobileNetV2 HLE model with narrow ASPP / decoder (the plumbing needs no trained weights)."""
    import torch

    from hle_core.config import HLEConfig
    from hle_core.model import build_model, save_checkpoint

    cfg = HLEConfig()
    cfg.model.backbone, cfg.model.pretrained = "mobilenet_v2", None
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.low_level_channels = 16, 16, 8
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "small.pt", build_model(cfg))
