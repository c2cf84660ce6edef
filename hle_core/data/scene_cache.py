"""Pre-rendered synthetic scenes on disk, so training spends its steps learning instead of rendering.

Rendering the scenes of a training step costs a tenth of the step on the 2-core development machine (data time
per step with and without the cache: docs/RESULTS.md, "Training throughput on these CPUs"). A cache
holds the ``num`` scenes of one ``(seed, size, generator options, class table, generator source)`` as two ``.npy``
arrays that are read through memory maps: ``images.npy`` (N, H, W, 3) uint8 RGB and ``panoptic.npy`` (N, H, W) int32.

The folder name is a SHA-256 of everything a scene depends on, including the source of
``hle_core/data/synthetic.py``: changing the generator (e.g. its annotation rule) is a cache miss, never a
stale scene. A cache is built in a temporary folder and renamed into place, so a killed build leaves no
half-written cache; ``meta.json`` is checked on open and a cache that does not match is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ClassTable
from . import synthetic
from .synthetic import SceneGenerator

__all__ = ["SceneCache", "scene_cache_key"]

log = logging.getLogger("hle.data")

_FORMAT = 1


def scene_cache_key(num: int, seed: int, size: tuple[int, int], classes: ClassTable,
                    generator_kwargs: dict[str, Any]) -> str:
    """SHA-256 (hex) of everything the cached scenes are a function of."""
    source = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()
    desc = {"format": _FORMAT, "num": int(num), "seed": int(seed), "size": [int(size[0]), int(size[1])],
            "classes": [[c.id, c.name, bool(c.isthing)] for c in classes.classes],
            "generator": {k: generator_kwargs[k] for k in sorted(generator_kwargs)}, "source": source}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def _render(args: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    size, seed, classes, kwargs, index = args
    f = SceneGenerator(size, seed, classes, **kwargs).frame(index)
    return index, f.image, f.panoptic


class SceneCache:
    """Scenes ``0..num-1`` of ``SceneGenerator(size, seed, classes, **generator_kwargs)`` on disk.

    Use :meth:`open` (builds on a miss); :meth:`__getitem__` returns ``(image, panoptic)`` copies, equal
    bit for bit to ``generator.frame(i)``'s. The memory maps open lazily in each process, so a dataset holding
    a cache can be handed to DataLoader workers.
    """

    def __init__(self, folder: Path, num: int, size: tuple[int, int]) -> None:
        self.folder, self.num, self.size = Path(folder), int(num), (int(size[0]), int(size[1]))
        self._images: np.ndarray | None = None
        self._panoptic: np.ndarray | None = None

    @classmethod
    def open(cls, root: str | Path, num: int, seed: int, size: tuple[int, int], classes: ClassTable,
             generator_kwargs: dict[str, Any] | None = None, workers: int | None = None,
             progress: bool = True) -> "SceneCache":
        """The cache of these scenes under ``root``, rendered first (``workers`` processes) when missing or
        invalid."""
        kwargs = dict(generator_kwargs or {})
        SceneGenerator(size, seed, classes, **kwargs)          # bad options fail here, before any work
        key = scene_cache_key(num, seed, size, classes, kwargs)
        folder = Path(root) / key[:24]
        cache = cls(folder, num, size)
        reason = cache._invalid_reason(key)
        if reason is None:
            return cache
        if folder.exists():
            log.warning("scene cache %s unusable (%s); rebuilding", folder, reason)
        cache._build(key, seed, classes, kwargs, workers, progress)
        return cache

    def _invalid_reason(self, key: str) -> str | None:
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            return "no meta.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            return f"meta.json unreadable: {exc}"
        if not isinstance(meta, dict) or meta.get("key") != key:
            return "meta.json key mismatch"
        H, W = self.size
        for name, shape, dtype in (("images.npy", (self.num, H, W, 3), np.uint8),
                                   ("panoptic.npy", (self.num, H, W), np.int32)):
            try:
                arr = np.load(self.folder / name, mmap_mode="r")
            except (OSError, ValueError) as exc:
                return f"{name} unreadable: {exc}"
            if arr.shape != shape or arr.dtype != dtype:
                return f"{name} is {arr.dtype}{arr.shape}, expected {np.dtype(dtype)}{shape}"
        return None

    def _build(self, key: str, seed: int, classes: ClassTable, kwargs: dict[str, Any], workers: int | None,
               progress: bool) -> None:
        H, W = self.size
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.folder.parent / f".{self.folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (self.num, H, W, 3))
            panoptic = np.lib.format.open_memmap(tmp / "panoptic.npy", "w+", np.int32, (self.num, H, W))
            jobs = [(self.size, seed, classes, kwargs, i) for i in range(self.num)]
            workers = max(1, min(workers or os.cpu_count() or 1, self.num))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=self.num, desc="scene cache", unit="scene", dynamic_ncols=True)
            if workers == 1:
                results = map(_render, jobs)
                pool = None
            else:
                pool = ProcessPoolExecutor(workers)
                results = pool.map(_render, jobs, chunksize=8)
            try:
                for i, image, pan in results:
                    images[i], panoptic[i] = image, pan
                    if bar is not None:
                        bar.update(1)
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
                if bar is not None:
                    bar.close()
            images.flush()
            panoptic.flush()
            del images, panoptic
            (tmp / "meta.json").write_text(json.dumps({"key": key, "num": self.num, "seed": int(seed),
                                                       "size": list(self.size), "generator": kwargs}, indent=1))
            if self.folder.exists():                      # an invalid cache of the same key: replace it
                shutil.rmtree(self.folder)
            try:
                os.replace(tmp, self.folder)
            except OSError:                               # another process built it meanwhile: keep theirs
                if self._invalid_reason(key) is not None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("scene cache %s: %d scenes of %dx%d", self.folder, self.num, H, W)

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._images is None or self._panoptic is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
            self._panoptic = np.load(self.folder / "panoptic.npy", mmap_mode="r")
        return np.array(self._images[index]), np.array(self._panoptic[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None, "_panoptic": None}
