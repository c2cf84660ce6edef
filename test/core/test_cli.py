"""The ``hle`` command: subcommand discovery, ``hle --help`` / ``hle info --json`` as real subprocesses, and the
light start-up contract (no torch or OpenCV imported to build the parser)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hle_core import __version__
from hle_core.cli import CommandModuleError, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
HLE = Path(sys.executable).parent / "hle"          # console script installed by `pip install -e .`


def run_hle(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    assert HLE.is_file(), f"{HLE} missing: the hle console script is installed by `make setup` (pip install -e .)"
    return subprocess.run([str(HLE), *args], capture_output=True, text=True, timeout=timeout, cwd="/")


def command_modules() -> list[str]:
    """Oracle for discovery: the public modules in hle_core/commands/, read off the file system, as command names
    (a module ``tune_decoder.py`` registers ``tune-decoder``)."""
    return sorted(p.stem.replace("_", "-") for p in (ROOT / "hle_core" / "commands").glob("*.py")
                  if not p.stem.startswith("_"))


# ---- subprocesses -------------------------------------------------------------------------------------------
def test_help_lists_every_command_module():
    out = run_hle("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: hle")
    listed = set(re.findall(r"^    (\S+)\s", out.stdout, re.M))
    assert set(command_modules()) <= listed and "info" in listed


def test_version_matches_package_xml_and_dist_metadata():
    out = run_hle("--version")
    assert out.returncode == 0
    xml_version = re.search(r"<version>([^<]+)</version>", (ROOT / "package.xml").read_text()).group(1)
    assert out.stdout.strip() == f"hle {xml_version}" == f"hle {__version__}"
    assert importlib.metadata.version("hle") == xml_version


def test_no_command_prints_usage_and_fails():
    out = run_hle()
    assert out.returncode == 2 and "usage: hle" in out.stderr


def test_unknown_command_fails():
    out = run_hle("no-such-command")
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.fixture(scope="module")
def info_report() -> dict:
    out = run_hle("info", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_info_json_reports_this_interpreter(info_report):
    report = info_report
    # Independent oracles: this test process runs the same interpreter and packages as the subprocess.
    import numpy
    import onnxruntime
    import torch

    assert report["hle"] == __version__
    assert report["python"]["version"] == platform.python_version()
    assert Path(report["python"]["executable"]).parent == Path(sys.executable).parent
    pk = report["packages"]
    assert pk["numpy"] == {"version": numpy.__version__, "importable": True, "error": None}
    assert pk["torch"]["version"] == torch.__version__ and pk["torch"]["importable"]
    assert pk["onnxruntime"]["version"] == onnxruntime.__version__
    assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
    try:
        import tensorrt  # noqa: F401
        trt_ok = True
    except ImportError:
        trt_ok = False
    assert pk["tensorrt"]["importable"] == trt_ok
    assert (pk["tensorrt"]["error"] is None) == trt_ok

    dev = report["device"]
    assert dev["cuda_available"] == torch.cuda.is_available()
    assert len(dev["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert dev["cpu_count"] == os.cpu_count()

    ros = report["ros"]
    assert ros["rclpy"] == (importlib.util.find_spec("rclpy") is not None)
    assert ros["messages_built"]                    # make setup builds them; test/ros/test_messages.py uses them

    backends = {(b["name"], b["device"]): b for b in report["backends"]}
    assert set(backends) == {("torch", "cpu"), ("torch", "cuda"), ("onnxruntime", "cpu"), ("onnxruntime", "cuda"),
                             ("tensorrt", "cuda")}
    assert backends["torch", "cpu"]["available"]
    assert backends["torch", "cuda"]["available"] == torch.cuda.is_available()
    assert backends["onnxruntime", "cpu"]["available"] == (
        "CPUExecutionProvider" in onnxruntime.get_available_providers())
    assert backends["onnxruntime", "cuda"]["available"] == (
        "CUDAExecutionProvider" in onnxruntime.get_available_providers() and torch.cuda.is_available())
    assert backends["tensorrt", "cuda"]["available"] == (trt_ok and torch.cuda.is_available())
    for b in report["backends"]:
        assert b["reason"], f"backend {b['name']} ({b['device']}) gives no reason"


@pytest.mark.slow  # a second `hle info` process: ~25 s on the 2-core machine
def test_info_text_lists_the_same_backends(info_report):
    out = run_hle("info")
    assert out.returncode == 0, out.stderr
    for b in info_report["backends"]:
        mark = "[x]" if b["available"] else "[ ]"
        assert f"{mark} {b['name']} ({b['device']})" in out.stdout


def test_building_the_parser_imports_nothing_heavy():
    """`hle --help` must start fast: command modules keep torch / cv2 / onnxruntime / rclpy imports in run()."""
    code = textwrap.dedent("""
        import sys
        from hle_core.cli import build_parser
        build_parser().format_help()
        heavy = sorted({"torch", "torchvision", "cv2", "onnxruntime", "onnx", "tensorrt", "rclpy", "scipy"}
                       & set(sys.modules))
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"building the hle parser imported: {out.stdout.strip()}"


# ---- discovery contract, on throwaway command packages ------------------------------------------------------
def make_package(root: Path, name: str, modules: dict[str, str]) -> str:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, body in modules.items():
        (pkg / f"{mod}.py").write_text(textwrap.dedent(body))
    return name


GOOD = """
    def add_parser(subparsers):
        p = subparsers.add_parser("{cmd}", help="{cmd} help")
        p.add_argument("--n", type=int, default=1)
        p.set_defaults(func=run)

    def run(args):
        print("{cmd}", args.n)
        return args.n
"""


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_discovers_every_public_module(on_path):
    pkg = make_package(on_path, "cmds_good", {"alpha": GOOD.format(cmd="alpha"), "beta": GOOD.format(cmd="beta"),
                                              "_helper": "X = 1\n"})
    parser = build_parser(pkg)
    args = parser.parse_args(["beta", "--n", "3"])
    assert args.command == "beta" and args.func(args) == 3
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == ["alpha", "beta"]


def test_module_without_add_parser_is_named(on_path):
    pkg = make_package(on_path, "cmds_no_add", {"broken": "def run(args):\n    return 0\n"})
    with pytest.raises(CommandModuleError, match=r"cmds_no_add\.broken .*has no add_parser"):
        build_parser(pkg)


def test_subcommand_without_func_is_named(on_path):
    body = "def add_parser(subparsers):\n    subparsers.add_parser('nofunc')\n"
    pkg = make_package(on_path, "cmds_no_func", {"nofunc": body})
    with pytest.raises(CommandModuleError, match=r"'nofunc' does not call set_defaults\(func=run\)"):
        build_parser(pkg)


def test_main_returns_the_command_exit_code(on_path, capsys):
    pkg = make_package(on_path, "cmds_main", {"alpha": GOOD.format(cmd="alpha")})
    assert main(["alpha", "--n", "4"], commands_package=pkg) == 4
    assert capsys.readouterr().out == "alpha 4\n"


def test_main_turns_bad_input_into_one_line_and_exit_2(on_path, capsys):
    body = """
        from hle_core.config import load_config

        def add_parser(subparsers):
            subparsers.add_parser("load").set_defaults(func=lambda args: load_config("/no/such/config.yaml"))
    """
    pkg = make_package(on_path, "cmds_bad_input", {"load": body})
    assert main(["load"], commands_package=pkg) == 2
    err = capsys.readouterr().err
    assert err.startswith("hle load: error: ") and "/no/such/config.yaml" in err and "Traceback" not in err


def test_main_lets_bugs_raise(on_path):
    body = "def add_parser(s):\n    s.add_parser('bug').set_defaults(func=lambda a: 1 / 0)\n"
    pkg = make_package(on_path, "cmds_bug", {"bug": body})
    with pytest.raises(ZeroDivisionError):
        main(["bug"], commands_package=pkg)
