#!/usr/bin/env bash
# Create a separate tool venv holding panopticapi's evaluation code (PyPI `panopticapi-lite` 0.2.0), the oracle
# for hle_core/evaluation/pq.py and pq_files.py. It pins numpy<2, which conflicts with the main .venv (numpy 2,
# opencv 5, ROS wheels), hence its own environment. Optional: `hotcoco` (Rust COCO metrics) for bench_pq.py.
#
#   scripts/panopticapi_venv.sh [VENV_DIR]        # default: .venv-panopticapi in the repository root
#   WITH_HOTCOCO=1 scripts/panopticapi_venv.sh    # also try to install hotcoco (optional, failure ignored)
#
# test/core/test_pq.py and bench/bench_pq.py run it through scripts/panopticapi_runner.py, which looks for the
# venv at $HLE_PANOPTICAPI_PYTHON (a python executable) or else <repo>/.venv-panopticapi/bin/python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-panopticapi}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "panopticapi-lite==0.2.0" "numpy<2" pillow
if [ "${WITH_HOTCOCO:-0}" = "1" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check hotcoco \
        || echo "hotcoco could not be installed; bench_pq.py will skip it" >&2
fi
"$VENV/bin/python" -c "import panopticapi.evaluation, numpy; print('panopticapi ok, numpy', numpy.__version__)"
