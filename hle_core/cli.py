"""The ``hle`` command: one subcommand per module of :mod:`hle_core.commands`.

Every module ``hle_core/commands/<name>.py`` (names starting with ``_`` excepted) is a subcommand. It exposes
``add_parser(subparsers)``, which registers its parser with ``set_defaults(func=run)``, and ``run(args) -> int``.
Command modules import torch, OpenCV and the like inside ``run``, so ``hle --help`` and light commands start fast.

Commands of other packages are registered in the installed metadata, entry-point group :data:`PLUGIN_GROUP`
(name: the command, value: a module with the same contract); this is how ``hle bag-play`` (ROS 2 replay,
``hle_ros.commands.bag_play``) joins without hle_core importing or naming the ROS package. A plugin module is
imported only when its command is run (``hle --help`` lists it without importing it).

    hle --help
    hle info --json

Errors: an expected error of any command (bad input: a config value, a missing / unreadable / foreign file, a
flag out of range; or the environment: an unwritable path, a full disk, a backend that cannot run) prints one
line ``hle COMMAND: error: ...`` naming the file or flag and exits 2; ``hle --debug COMMAND ...`` shows the
traceback instead. Anything else is a bug and propagates with its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Any, Sequence

from . import __version__
from .config import ConfigError

__all__ = ["CommandModuleError", "build_parser", "main", "is_expected_error", "plugin_commands"]

COMMANDS_PACKAGE = "hle_core.commands"
#: Entry-point group of the commands the ROS side adds to ``hle`` (setup.py ``entry_points``), e.g.
#: ``bag-play = hle_ros.commands.bag_play``; only the ``hle`` command itself (:data:`COMMANDS_PACKAGE`) loads them.
PLUGIN_GROUP = "hle.commands"
#: The distribution whose metadata registers them (setup.py ``name``).
DISTRIBUTION = "hle"
#: Expected errors besides ConfigError / OSError / ValueError, as (module, class): checked only when the module is
#: already imported (an error of a module never imported cannot have been raised), so start-up stays light.
EXPECTED_ERRORS = (
    ("yaml", "YAMLError"),
    ("hle_core.model.checkpoint", "CheckpointError"),
    ("hle_core.model.backbones", "PretrainedWeightsError"),
    ("hle_core.runtime.export", "OnnxExportError"),
    ("hle_core.runtime.tensorrt_build", "TensorRTBuildError"),
    ("hle_core.runtime.engine_cache", "EngineCacheError"),
    ("hle_core.runtime.base", "BackendUnavailable"),
    ("hle_core.runtime.tensorrt_backend", "EngineMismatchError"),
)
#: The longest error line printed (a message quoting a whole file would flood the terminal).
MAX_ERROR_CHARS = 2000


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
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line (also after COMMAND)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    names = _command_modules(commands_package)
    plugins = plugin_commands() if commands_package == COMMANDS_PACKAGE and only not in names else {}
    if only is not None:
        names, plugins = [n for n in names if n == only], {n: ep for n, ep in plugins.items() if n == only}
    modules = [importlib.import_module(f"{commands_package}.{name}") for name in names]
    for name, ep in sorted(plugins.items()):
        if only is None:                        # listed, not imported (a plugin may pull in a whole stack)
            _add_plugin_stub(subparsers, name, ep)
            continue
        try:
            modules.append(ep.load())
        except ImportError as exc:
            raise CommandModuleError(f"command {name.replace('_', '-')!r} ({ep.value}, entry point of "
                                     f"{PLUGIN_GROUP}) cannot be imported: {exc}") from exc
    for module in modules:
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

    A command's expected errors (:func:`is_expected_error`: bad input, unusable files, the environment) print one
    line and exit 2 (with ``--debug`` they propagate with their traceback); anything else propagates too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv                     # accepted before or after the command name
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser(commands_package, only=_named_command(argv, commands_package))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from .allocator import keep_freed_memory

    keep_freed_memory()                           # freed tensors stay in the process for the next image / step
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug or not is_expected_error(exc):
            raise
        # Bad input or environment: the message says what and where; no traceback.
        print(f"hle {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


def is_expected_error(exc: BaseException) -> bool:
    """``exc`` is an error a user can cause or fix (bad input, a file, the machine), not a bug: ConfigError,
    OSError (missing / unwritable file, full disk), ValueError (bad values and formats: BagError,
    OnnxMetadataError, ...) and the classes of :data:`EXPECTED_ERRORS`."""
    if isinstance(exc, (ConfigError, OSError, ValueError)):
        return True
    for module, name in EXPECTED_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: its message with line breaks folded (an OSError keeps its file name), and its type
    when the message alone says nothing."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if not text or isinstance(exc, OSError) and exc.strerror and text == exc.strerror:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " …"


def _named_command(argv: Sequence[str], commands_package: str) -> str | None:
    """The command module named by the first non-option argument (``tune-decoder`` -> ``tune_decoder``), or None
    (no command, ``--help``, an unknown name: the full parser then lists or rejects it)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None:
        return None
    name = first.replace("-", "_")
    if name in _command_modules(commands_package):
        return name
    return name if commands_package == COMMANDS_PACKAGE and name in plugin_commands() else None


def _command_modules(commands_package: str) -> list[str]:
    """The public module names of ``commands_package``, sorted."""
    package = importlib.import_module(commands_package)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def plugin_commands() -> dict[str, Any]:
    """Command module name (``bag_play``) -> ``importlib.metadata.EntryPoint`` of the commands registered in
    :data:`PLUGIN_GROUP` by the installed :data:`DISTRIBUTION` (nothing is imported). Only that distribution's
    metadata is read (scanning every installed distribution's would add ~0.2 s to ``hle --help``); of several
    copies on ``sys.path`` (an editable install's stale ``hle.egg-info`` in the checkout) the first naming a
    command wins."""
    from importlib.metadata import distributions

    found: dict[str, Any] = {}
    for dist in distributions(name=DISTRIBUTION):
        for ep in dist.entry_points:
            if ep.group == PLUGIN_GROUP:
                found.setdefault(ep.name.replace("-", "_"), ep)
    return found


def _add_plugin_stub(subparsers: Any, name: str, ep: Any) -> None:
    """List plugin command ``name`` without importing it: run, it hands its arguments to :func:`main`, which
    imports the plugin (as ``hle NAME ...`` always does)."""
    command = name.replace("_", "-")
    p = subparsers.add_parser(command, add_help=False, prefix_chars="\0",     # every argument is one of args
                              help=f"(from {ep.value}; see `hle {command} --help`)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main([command, *args.args]))


if __name__ == "__main__":
    sys.exit(main())
