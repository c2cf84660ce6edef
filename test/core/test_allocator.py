"""hle_core.allocator: glibc keeps freed tensor memory for reuse (fewer page faults per image), the user's own
allocator settings win, and the ``hle`` command applies it before running a command.

The effect is checked with glibc's own accounting (``mallinfo2``), not by timing: where a map-sized block comes
from (its own mapping or the heap) and whether the heap keeps it after free. Each case runs in its own interpreter
(mallopt is process-wide and one-way).
"""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from hle_core import allocator

HEAP = textwrap.dedent("""
    import ctypes, json, torch
    from hle_core.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):        # glibc >= 2.33
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    said = keep_freed_memory()
    e = torch.ones(8, 1024 * 2048)            # the embedding map of a 1024 x 2048 image: 64 MiB
    live = libc.mallinfo2()
    del e
    freed = libc.mallinfo2()
    print(json.dumps({"said": said, "mapped_live": live.hblkhd, "heap_live": live.arena,
                      "mapped_freed": freed.hblkhd, "heap_freed": freed.arena}))
""")
MIB = 1 << 20


def heap_use(**env: str) -> dict:
    import json
    import os

    out = subprocess.run([sys.executable, "-c", HEAP], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip().splitlines()
    return json.loads(out[-1])


def has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not has_mallinfo2(),
                    reason="mallopt tuning applies to glibc (mallinfo2: glibc >= 2.33)")
def test_a_map_sized_block_comes_from_the_heap_and_stays_there_after_free():
    """glibc's defaults serve a 64 MiB block (above the 32 MiB ceiling of its dynamic mmap threshold) with its own
    mapping and unmap it on free: the next image faults it in again, page by page. Tuned, the block is carved from
    the heap and the heap keeps it after free, for the next image."""
    off = heap_use(HLE_KEEP_FREED_MEMORY="0")
    on = heap_use(HLE_KEEP_FREED_MEMORY="1")
    assert off["said"] == "skipped: HLE_KEEP_FREED_MEMORY=0"
    assert on["said"].startswith("glibc mallopt: mmap threshold 1024 MiB")
    assert off["mapped_live"] >= 64 * MIB and off["mapped_freed"] < 64 * MIB        # own mapping, returned
    assert on["mapped_live"] < 64 * MIB <= on["heap_live"]                           # from the heap ...
    assert on["heap_freed"] >= 64 * MIB                                              # ... which keeps it


@pytest.mark.parametrize("environ, reason", [
    ({"HLE_KEEP_FREED_MEMORY": "0"}, "skipped: HLE_KEEP_FREED_MEMORY=0"),
    ({"HLE_KEEP_FREED_MEMORY": "off"}, "skipped: HLE_KEEP_FREED_MEMORY=off"),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "skipped: glibc tuned by the environment (MALLOC_MMAP_THRESHOLD_)"),
    ({"MALLOC_TRIM_THRESHOLD_": "1", "MALLOC_TOP_PAD_": "1"},
     "skipped: glibc tuned by the environment (MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_)"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "skipped: jemalloc is preloaded (LD_PRELOAD)"),
])
def test_the_users_allocator_choice_wins(environ, reason):
    assert allocator._apply(environ) == reason


def test_another_c_library_is_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator._apply({}) == "skipped: the C library is not glibc"


def test_applied_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setattr(allocator, "_apply", lambda environ: calls.append(environ) or "done")
    assert allocator.keep_freed_memory({}) == allocator.keep_freed_memory({}) == "done"
    assert len(calls) == 1


def test_the_hle_command_applies_it_before_the_command(monkeypatch, capsys):
    from hle_core import cli

    order = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: order.append("allocator") or "x")
    monkeypatch.setattr(cli, "build_parser", lambda *a, **k: _Parser(order))
    monkeypatch.setattr(cli, "_named_command", lambda argv, package: None)
    assert cli.main(["anything"]) == 0
    assert order == ["allocator", "command"]


class _Parser:
    """Stands for the hle argument parser: one command that records that it ran."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def parse_args(self, argv):
        import argparse

        return argparse.Namespace(command="anything", func=lambda args: self.order.append("command") or 0)
