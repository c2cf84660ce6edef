"""Deterministic, resumable, shardable sampling: the data order depends only on (seed, epoch)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler", "sample_seed"]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of the augmentation of the sample drawn at ``position`` of ``epoch`` (independent of workers)."""
    return (seed * 1_000_003 + epoch * 7_919 + position * 104_729) % (2**31 - 1)


class EpochSampler(Sampler):
    """Yields ``(index, augmentation_seed)`` pairs in a permutation fixed by ``(seed, epoch)``.

    Each rank of a distributed run takes every ``world_size``-th entry. :meth:`set_position` starts an
    epoch part-way through, which is how ``--resume`` continues exactly where a checkpoint was written.
    """

    def __init__(self, num: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num < 1:
            raise ValueError(f"cannot sample from an empty dataset (num={num})")
        self.num, self.seed, self.rank, self.world = num, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        """Next iteration covers ``epoch`` from this rank's ``start``-th sample on."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 65_537 + self.epoch)
        return torch.randperm(self.num, generator=g)[self.rank::self.world].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        for pos in range(self.start, len(order)):
            yield order[pos], sample_seed(self.seed, self.epoch, pos * self.world + self.rank)

    def __len__(self) -> int:
        return max(0, len(self._order()) - self.start)
