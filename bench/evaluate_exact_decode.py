"""``hle evaluate`` with the exact per-pixel full decode (``coarse_factor=1``) instead of the bounded default.

The before / after check of issue 15: the same command line as ``hle evaluate``, e.g.::

    PYTHONPATH=. .venv/bin/python bench/evaluate_exact_decode.py evaluate --checkpoint models/hle_street.pt --data D
"""
from __future__ import annotations

import sys

from hle_core.cli import main
from hle_core.decoding import panoptic

if __name__ == "__main__":
    panoptic.decode_panoptic.__kwdefaults__["coarse_factor"] = 1      # every call of the pipeline's decoder
    sys.exit(main(sys.argv[1:]))
