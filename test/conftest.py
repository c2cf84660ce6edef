"""Test-session environment and the fixtures shared by test/core and test/ros.

ROS 2 traffic of this session stays on loopback and apart from other sessions.

Set when pytest loads this file, before any test imports rclpy; subprocesses started by tests inherit it.
- ``ROS_DOMAIN_ID``: derived from this process id (1..100), so that test runs in parallel on one machine
  (several developers, CI) do not see each other's topics. Always overridden: tests must not join a live system.
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery over loopback only (Kilted ignores ROS_LOCALHOST_ONLY).
- ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` unless already set: large images over loopback arrive faster than
  over the default transports, and best-effort ones arrive at all.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Domain ids 1..100 stay inside the range every DDS vendor accepts on Linux (0..101); 0 is the default of live systems.
ROS_DOMAIN_ID = 1 + os.getpid() % 100

os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


def pytest_report_header(config) -> str:
    return (f"ROS 2 test environment: ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']} "
            f"FASTDDS_BUILTIN_TRANSPORTS={os.environ['FASTDDS_BUILTIN_TRANSPORTS']}")


# --- the tiny model: one configuration, one untrained checkpoint per session ----------------------------------------
def _tiny_config(**model: Any):
    """An untrained-plumbing HLE configuration: MobileNetV2 without pretrained weights, narrow ASPP / decoder
    (16 / 16 / 8 channels); keyword arguments set other ``cfg.model`` fields (a test's specific variant)."""
    from hle_core.config import HLEConfig

    cfg = HLEConfig()
    cfg.model.backbone, cfg.model.pretrained = "mobilenet_v2", None
    cfg.model.aspp_channels, cfg.model.decoder_channels, cfg.model.low_level_channels = 16, 16, 8
    for name, value in model.items():
        if not hasattr(cfg.model, name):
            raise AttributeError(f"ModelConfig has no field {name!r}")
        setattr(cfg.model, name, value)
    return cfg


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    """``tiny_config(**model_fields) -> HLEConfig``: the tiny model's configuration (a fresh object per call)."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (:func:`_tiny_config`, seed 0) saved as an HLE checkpoint: the plumbing needs no trained
    weights. Shared by the whole session: read it, never change it."""
    import torch

    from hle_core.model import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("tiny_model") / "tiny.pt", build_model(_tiny_config()))


# --- synthetic camera bags: each argument set written once per session ---------------------------------------------
@pytest.fixture(scope="session")
def synthetic_bag(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synthetic_bag(**kwargs) -> Path``: :func:`hle_core.bags.write_synthetic_bag` (``progress=False``) into a
    session folder, written once per argument set and shared by every test that asks for the same one: read it,
    never change it (copy it first). ``storage="sqlite3"`` gives a bag directory, otherwise an ``.mcap`` file.
    Skips the test when ``rosbags`` is missing."""
    written: dict[tuple, Path] = {}

    def make(**kwargs: Any) -> Path:
        pytest.importorskip("rosbags")
        from hle_core.bags import write_synthetic_bag

        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
        if key not in written:
            folder = tmp_path_factory.mktemp("synthetic_bag")
            path = folder / ("bag" if kwargs.get("storage") == "sqlite3" else "bag.mcap")
            write_synthetic_bag(path, progress=False, **kwargs)
            written[key] = path
        return written[key]

    return make
