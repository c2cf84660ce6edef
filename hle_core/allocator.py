"""Keep freed tensor memory in the process for reuse (glibc malloc tuning), set once per process.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold (128 KiB at start,
raised after such a block is freed, but never above 32 MiB) with a fresh ``mmap`` and returns them with ``munmap``
on free, and trims the top of its heap when more than twice that threshold is free there; so a tensor that is made
and dropped for every image or step (a K × N logit block, an upsampled label map, activations and gradients) can
cost the kernel a page fault and a page zeroing per 4 KiB each time — always above 32 MiB (the maps of a
1024 × 2048 image), and below it until the threshold has adapted. What that costs and what this saves (training
steps, decodes of large maps; not smaller decodes in a warmed-up process) is measured in docs/RESULTS.md,
"Memory allocator" and "Real time on CPU".

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``) so that freed blocks stay in the
heap and the next image reuses them: the process keeps its peak working set mapped instead of giving it back
between frames — what a long-running node wants, and what jemalloc / tcmalloc (``LD_PRELOAD``) do by design.
The ``hle`` command and the ROS node call it at start; results are bit-identical, only time changes.

It does nothing (and says why) when the C library is not glibc, when glibc's own ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` are set (the user's choice wins), when another allocator is
preloaded, or when ``HLE_KEEP_FREED_MEMORY=0``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from typing import Mapping

__all__ = ["keep_freed_memory", "KEEP_FREED_MEMORY_ENV", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

log = logging.getLogger("hle.allocator")

#: Set to 0 to leave malloc as the C library configures it.
KEEP_FREED_MEMORY_ENV = "HLE_KEEP_FREED_MEMORY"
#: Blocks up to this size come from the heap (reused after free) instead of a fresh mmap: 1 GiB covers every
#: per-image tensor up to 2048 × 4096 maps.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap is returned to the system only above this (glibc's default: 128 KiB).
TRIM_THRESHOLD = 1 << 30
#: glibc ``mallopt`` parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")

_state: dict[str, str] = {}


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> str:
    """Tune glibc malloc to keep freed blocks for reuse (module docstring); idempotent, never raises.

    Returns a one-line description of what was done (``"glibc mallopt: ..."``) or why nothing was (``"skipped:
    ..."``), which is also logged once at INFO.
    """
    if "result" in _state:
        return _state["result"]
    result = _apply(os.environ if environ is None else environ)
    _state["result"] = result
    log.info("memory allocator: %s", result)
    return result


def _apply(environ: Mapping[str, str]) -> str:
    if environ.get(KEEP_FREED_MEMORY_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"skipped: {KEEP_FREED_MEMORY_ENV}={environ[KEEP_FREED_MEMORY_ENV]}"
    user_set = [name for name in _GLIBC_ENV if name in environ]
    if user_set:
        return f"skipped: glibc tuned by the environment ({', '.join(user_set)})"
    preload = environ.get("LD_PRELOAD", "")
    other = next((name for name in _PRELOADED if name in preload), None)
    if other:
        return f"skipped: {other} is preloaded (LD_PRELOAD)"
    libc_name, _ = platform.libc_ver()
    if libc_name != "glibc":
        return f"skipped: the C library is {libc_name or 'not glibc'}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return f"skipped: no mallopt in the C library ({exc})"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not (ok_mmap and ok_trim):
        return f"skipped: glibc refused mallopt (mmap threshold {ok_mmap}, trim threshold {ok_trim})"
    return f"glibc mallopt: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
