"""``hle evaluate`` with one path of the full decode forced, instead of the default choice between them.

The before / after check of issue 15: the same command line as ``hle evaluate``, e.g.::

    PYTHONPATH=. .venv/bin/python bench/evaluate_exact_decode.py evaluate --checkpoint models/hle_street.pt --data D
    PYTHONPATH=. .venv/bin/python bench/evaluate_exact_decode.py --bounded evaluate --checkpoint ... --data D

Without ``--bounded``: the exact per-pixel decoder (``coarse_factor=1``) for every image; with it: the bounded
path (coarse cells + refined borders, ``exact_max_pixels=0``) for every image.
"""
from __future__ import annotations

import sys

from hle_core.cli import main
from hle_core.decoding import panoptic

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--bounded"]:
        argv = argv[1:]
        panoptic.decode_panoptic.__kwdefaults__["exact_max_pixels"] = 0    # every call of the pipeline's decoder
    else:
        panoptic.decode_panoptic.__kwdefaults__["coarse_factor"] = 1
    sys.exit(main(argv))
