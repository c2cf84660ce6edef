"""The output of panoptic decoding (§3.5): a Cityscapes-convention panoptic map plus one row per segment."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["PanopticResult"]


@dataclass
class PanopticResult:
    """Panoptic segmentation of one image.

    Attributes:
        panoptic: ``(H, W)`` int32; void 0, stuff pixel = category id, thing pixel = category id · 1000 + k
            (k = 0, 1, ... per class, in descending score order).
        semantic: ``(H, W)`` int64 class *index* (0..K-1): the argmax of ψ (eq. 9) before any thresholding.
        ids: ``(S,)`` int64 panoptic id of every segment (things and stuff), ascending.
        category_ids: ``(S,)`` int64 category id (``ClassTable`` id, not the index).
        is_thing: ``(S,)`` bool.
        scores: ``(S,)`` float32; seed value s_i of the instance's seed for things, mean ψ over the segment
            for stuff.
        areas: ``(S,)`` int64 pixel counts at the resolution of ``panoptic``.
        boxes: ``(S, 4)`` int64 ``x0, y0, x1, y1`` inclusive pixel coordinates.
        embeddings: ``(S, D)`` float32 normalised mean embedding of each segment.
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    ids: torch.Tensor
    category_ids: torch.Tensor
    is_thing: torch.Tensor
    scores: torch.Tensor
    areas: torch.Tensor
    boxes: torch.Tensor
    embeddings: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.numel())

    @property
    def num_instances(self) -> int:
        return int(self.is_thing.sum())

    def to(self, device: torch.device | str) -> "PanopticResult":
        """A copy with every tensor on ``device``."""
        return PanopticResult(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def to_list(self) -> list[dict[str, Any]]:
        """One plain-python dict per segment (ids, category id, thing flag, score, area, bbox, embedding)."""
        cpu = self.to("cpu")
        return [
            {
                "id": int(cpu.ids[i]),
                "category_id": int(cpu.category_ids[i]),
                "isthing": bool(cpu.is_thing[i]),
                "score": float(cpu.scores[i]),
                "area": int(cpu.areas[i]),
                "bbox": [int(v) for v in cpu.boxes[i]],
                "embedding": [float(v) for v in cpu.embeddings[i]],
            }
            for i in range(len(cpu))
        ]
