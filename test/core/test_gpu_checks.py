"""scripts/gpu_checks.sh, the prepared standing GPU checks, run as a CPU smoke: every step of it must run and write
its files, so that a session that is lent a GPU spends its minutes on the GPU and not on a broken script.

What this cannot check: any GPU figure, AMP, CUDA graphs, the recipe's batch fitting in GPU memory (the script's
header says so). The script is never run on a GPU here (none has been lent).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hle_core.model import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_checks_script_runs_every_step_on_cpu(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "GPU_CHECKS_DEVICE": "cpu", "SCENES": "4", "VAL_SCENES": "2", "BATCH_SIZE": "2",
           "TRAIN_STEPS": "2", "NUM_WORKERS": "0", "BENCH": "quick", "OUT": str(out), "RUN_DIR": str(run),
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_checks.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    log = (out / "gpu_checks.log").read_text()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for step in ("train", "export", "backends_fp32", "backends_fp16_graphs", "decode_trained"):
        assert f"{step}: exit 0 after" in log, f"{step} failed:\n{log[-3000:]}"
    assert "done" in log.splitlines()[-1]
    files = {p.name for p in out.iterdir()}
    assert {"machine.txt", "hle_street_gpu.pt", "backends_fp32.json", "backends_fp16_graphs.json",
            "decode_trained.json", "gpu_checks.log"} <= files and len(files) <= 8      # the device tool's 8 files
    release = load_checkpoint(out / "hle_street_gpu.pt")
    assert release["extra"]["step"] == 2 and not release.get("optimizer")          # release weights only
    assert (run / "scene_cache").is_dir()                                           # nothing written into the checkout
