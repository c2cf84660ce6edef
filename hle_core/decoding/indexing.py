"""Table lookups and pixel gathers of the decoder, written with ``index_select`` / ``index_copy_``.

Advanced indexing (``table[index]``, ``x[:, pix]``, ``x[pix] = v``) goes through PyTorch's general ``index``
kernels, which on CPU are several times slower than the dedicated ``index_select`` / ``index_copy_`` for the
same gather or scatter along one dimension (docs/RESULTS.md, "Real time on CPU"); the decoder does a handful of
them per pixel, so they are written out here once.
"""
from __future__ import annotations

import torch

__all__ = ["lookup", "gather_columns", "put"]


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 1-D ``table`` and an int64 ``index`` of any shape (same shape out)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def gather_columns(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]`` for a 2-D ``x`` and a 1-D int64 ``index``."""
    return x.index_select(1, index)


def put(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x[index] = values`` in place for 1-D ``x``, ``index`` and ``values`` (distinct indices); returns ``x``."""
    return x.index_copy_(0, index, values)
