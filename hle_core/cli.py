"""The ``hle`` command: one subcommand per module of :mod:`hle_core.commands`.

Every module ``hle_core/commands/<name>.py`` (names starting with ``_`` excepted) is a subcommand. It exposes
``add_parser(subparsers)``, which registers its parser with ``set_defaults(func=run)``, and ``run(args) -> int``.
Command modules import torch, OpenCV and the like inside ``run``, so ``hle --help`` and light commands start fast.

    hle --help
    hle info --json
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from . import __version__
from .config import ConfigError

__all__ = ["CommandModuleError", "build_parser", "main"]

COMMANDS_PACKAGE = "hle_core.commands"


class CommandModuleError(TypeError):
    """A module of the commands package does not follow the ``add_parser`` / ``set_defaults(func=...)`` contract."""


def build_parser(commands_package: str = COMMANDS_PACKAGE, only: str | None = None) -> argparse.ArgumentParser:
    """The ``hle`` argument parser with one subcommand per public module of ``commands_package``.

    ``only``: register just this module's subcommand(s) (:func:`main` passes the command named on the command
    line, so one command's start-up does not import or compile the others).

    Raises:
        CommandModuleError: a command module has no callable ``add_parser``, or its parser sets no ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="hle",
        description="HLE: Hierarchical Lovász Embeddings for panoptic segmentation (CVPR 2021).",
        epilog="Run `hle COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"hle {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    package = importlib.import_module(commands_package)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    if only is not None:
        names = [n for n in names if n == only]
    for name in names:
        module = importlib.import_module(f"{commands_package}.{name}")
        add_parser = getattr(module, "add_parser", None)
        if not callable(add_parser):
            raise CommandModuleError(
                f"command module {module.__name__} ({module.__file__}) has no add_parser(subparsers) function")
        before = set(subparsers.choices)
        add_parser(subparsers)
        added = set(subparsers.choices) - before
        if not added:
            raise CommandModuleError(f"{module.__name__}.add_parser registered no subcommand")
        for command in added:
            if not callable(subparsers.choices[command].get_default("func")):
                raise CommandModuleError(
                    f"{module.__name__}: subcommand {command!r} does not call set_defaults(func=run)")
    return parser


def main(argv: Sequence[str] | None = None, commands_package: str = COMMANDS_PACKAGE) -> int:
    """Entry point of the ``hle`` console script; returns the process exit code.

    A command's bad-input errors (:class:`~hle_core.config.ConfigError`, ``FileNotFoundError``) print one line
    and exit 2; anything else propagates with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(commands_package, only=_named_command(argv, commands_package))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError) as exc:
        # Bad user input (a config value, a missing file): the message says what and where; no traceback.
        print(f"hle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _named_command(argv: Sequence[str], commands_package: str) -> str | None:
    """The command module named by the first non-option argument (``tune-decoder`` -> ``tune_decoder``), or None
    (no command, ``--help``, an unknown name: the full parser then lists or rejects it)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None:
        return None
    name = first.replace("-", "_")
    package = importlib.import_module(commands_package)
    known = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    return name if name in known else None


if __name__ == "__main__":
    sys.exit(main())
