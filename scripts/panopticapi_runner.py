"""Run panopticapi's ``pq_compute`` (the oracle of ``hle evaluate pq``) and, optionally, hotcoco's, as subprocesses.

panopticapi (PyPI ``panopticapi-lite`` 0.2.0) pins ``numpy<2``, so it lives in its own tool venv made by
``scripts/panopticapi_venv.sh``; this module finds that venv's python (``$HLE_PANOPTICAPI_PYTHON`` or
``<repo>/.venv-panopticapi/bin/python``) and runs panopticapi's single-process evaluation
(``pq_compute_single_core``; its ``pq_compute`` spawns one process per core) on COCO panoptic files. The result
JSON has panopticapi's keys (``All``, ``Things``, ``Stuff`` -> pq/sq/rq/n, ``per_class`` keyed by category id,
as a string after the JSON round trip).

The one runner shared by ``test/core/test_pq.py`` (exactness) and ``bench/bench_pq.py`` (timing); ``hle_core``
does not import it. Standard library only, so it imports in either venv.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

__all__ = ["PANOPTICAPI_SCRIPT", "HOTCOCO_SCRIPT", "panopticapi_python", "has_hotcoco", "panopticapi_command",
           "hotcoco_command", "run_panopticapi"]

ROOT = Path(__file__).resolve().parents[1]

#: Run with ``python -c PANOPTICAPI_SCRIPT gt.json pred.json gt_folder pred_folder out.json``.
PANOPTICAPI_SCRIPT = r"""
import json, sys
from panopticapi.evaluation import pq_compute_single_core
gt_json, pred_json, gt_folder, pred_folder, out = sys.argv[1:6]
gt = json.load(open(gt_json)); pred = json.load(open(pred_json))
cats = {c["id"]: c for c in gt["categories"]}
by_id = {a["image_id"]: a for a in pred["annotations"]}
stat = pq_compute_single_core(0, [(a, by_id[a["image_id"]]) for a in gt["annotations"]], gt_folder, pred_folder, cats)
res = {}
for name, isthing in [("All", None), ("Things", True), ("Stuff", False)]:
    res[name], per_class = stat.pq_average(cats, isthing=isthing)
    if name == "All":
        res["per_class"] = per_class
json.dump(res, open(out, "w"), default=float)
"""

#: The same arguments, hotcoco's ``pq_compute`` (Rust; ``WITH_HOTCOCO=1 scripts/panopticapi_venv.sh``).
HOTCOCO_SCRIPT = r"""
import json, sys
from hotcoco.panoptic import pq_compute
gt_json, pred_json, gt_folder, pred_folder, out = sys.argv[1:6]
json.dump(pq_compute(gt_json, pred_json, gt_folder, pred_folder), open(out, "w"), default=float)
"""


def panopticapi_python(python: str | Path | None = None) -> Path | None:
    """The tool venv's python: ``python`` if given, else ``$HLE_PANOPTICAPI_PYTHON``, else
    ``<repo>/.venv-panopticapi/bin/python``; None when that file does not exist."""
    if python is None:
        env = os.environ.get("HLE_PANOPTICAPI_PYTHON")
        python = Path(env) if env else ROOT / ".venv-panopticapi" / "bin" / "python"
    path = Path(python)
    return path if path.exists() else None


def has_hotcoco(python: str | Path) -> bool:
    """Whether ``hotcoco`` imports in the venv of ``python``."""
    return subprocess.run([str(python), "-c", "import hotcoco"], capture_output=True).returncode == 0


def _command(python: str | Path, script: str, gt_json: str | Path, pred_json: str | Path, gt_folder: str | Path,
             pred_folder: str | Path, out: str | Path) -> list[str]:
    return [str(python), "-c", script, *(str(p) for p in (gt_json, pred_json, gt_folder, pred_folder, out))]


def panopticapi_command(python: str | Path, gt_json: str | Path, pred_json: str | Path, gt_folder: str | Path,
                        pred_folder: str | Path, out: str | Path) -> list[str]:
    """The command line that evaluates the files with panopticapi and writes its result JSON to ``out``."""
    return _command(python, PANOPTICAPI_SCRIPT, gt_json, pred_json, gt_folder, pred_folder, out)


def hotcoco_command(python: str | Path, gt_json: str | Path, pred_json: str | Path, gt_folder: str | Path,
                    pred_folder: str | Path, out: str | Path) -> list[str]:
    """The command line that evaluates the files with hotcoco and writes its result JSON to ``out``."""
    return _command(python, HOTCOCO_SCRIPT, gt_json, pred_json, gt_folder, pred_folder, out)


def run_panopticapi(gt_json: str | Path, pred_json: str | Path, gt_folder: str | Path, pred_folder: str | Path,
                    out: str | Path, python: str | Path | None = None, timeout: float = 120) -> dict:
    """panopticapi's result dict for the files (written to ``out`` too).

    Raises:
        FileNotFoundError: no tool venv (create it with ``scripts/panopticapi_venv.sh``).
        subprocess.CalledProcessError: panopticapi failed (its stderr is in the exception).
    """
    py = panopticapi_python(python)
    if py is None:
        raise FileNotFoundError("panopticapi tool venv not found (create it with scripts/panopticapi_venv.sh or set "
                                "HLE_PANOPTICAPI_PYTHON)")
    subprocess.run(panopticapi_command(py, gt_json, pred_json, gt_folder, pred_folder, out), check=True,
                   capture_output=True, timeout=timeout)
    return json.loads(Path(out).read_text())
