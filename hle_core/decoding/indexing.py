"""Table lookups and pixel gathers of the decoder, written with ``index_select`` / ``index_copy_``.

Advanced indexing (``table[index]``, ``x[:, pix]``, ``x[pix] = v``) goes through PyTorch's general ``index``
kernels, which on CPU are several times slower than the dedicated ``index_select`` / ``index_copy_`` for the
same gather or scatter along one dimension (docs/RESULTS.md, "Real time on CPU"); the decoder does a handful of
them per pixel, so they are written out here once.
"""
from __future__ import annotations

import functools

import torch

from hle_core.kernels import pixel_coordinates

__all__ = ["lookup", "gather_columns", "put", "map_coordinates"]


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 1-D ``table`` and an int64 ``index`` of any shape (same shape out)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def gather_columns(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]`` for a 2-D ``x`` and a 1-D int64 ``index``."""
    return x.index_select(1, index)


def put(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x[index] = values`` in place for 1-D ``x``, ``index`` and ``values`` (distinct indices); returns ``x``."""
    return x.index_copy_(0, index, values)


@functools.lru_cache(maxsize=16)
def map_coordinates(height: int, width: int, coord_scale: float, stride: float, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    """ρ of every cell of a map, ``(2, height · width)`` (:func:`hle_core.kernels.pixel_coordinates` flattened),
    computed once per map geometry: a camera's frames share it. Read-only — callers gather from it and never
    write into it."""
    return pixel_coordinates(height, width, coord_scale, stride=stride, device=device, dtype=dtype).reshape(2, -1)
