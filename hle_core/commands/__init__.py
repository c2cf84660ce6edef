"""Subcommands of the ``hle`` command, one module each (discovered by :func:`hle_core.cli.build_parser`).

A module ``<name>.py`` here defines ``add_parser(subparsers)``, which adds its parser and calls
``set_defaults(func=run)``, and ``run(args) -> int`` (the exit code). Heavy imports (torch, cv2, onnxruntime)
belong inside ``run`` so that ``hle --help`` stays fast. Modules whose name starts with ``_`` are helpers.
"""
