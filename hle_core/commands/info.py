"""``hle info``: versions, the compute device, and which inference backends can run here (and why not the others).

    hle info
    hle info --json

Backends are those of :mod:`hle_core.runtime` (docs/ARCHITECTURE.md): torch (CPU, CUDA), onnxruntime (CPU, CUDA
execution provider) and TensorRT (CUDA). A backend is listed available when its library imports and its device is
present; running it also needs a model (a checkpoint, or an exported ONNX file / engine).
ROS is never imported here (hle_core does not import ROS): rclpy and the messages are only looked up.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .. import __version__

__all__ = ["add_parser", "run", "collect", "format_text"]

# (import name, distribution name used when the module does not import) in the order printed.
PACKAGES = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "numpy"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
    ("tensorrt", "tensorrt"),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("info", help="print versions, device and the available inference backends",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0


# ---- collection ---------------------------------------------------------------------------------------------
def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe_package(module_name: str, dist: str) -> tuple[dict[str, Any], Any]:
    """Import ``module_name``; return ``({version, importable, error}, module or None)``."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 -- a broken install must be reported, whatever it raises
        return {"version": _dist_version(dist), "importable": False, "error": _error_text(exc)}, None
    version = getattr(module, "__version__", None) or _dist_version(dist)
    return {"version": str(version) if version is not None else None, "importable": True, "error": None}, module


def _ros_status() -> dict[str, Any]:
    """rclpy and the generated hle_ros messages, found on sys.path without importing them."""
    rclpy_present = importlib.util.find_spec("rclpy") is not None
    messages = [str(Path(p) / "hle_ros" / "msg") for p in sys.path
                if (Path(p or ".") / "hle_ros" / "msg" / "__init__.py").is_file()]
    return {
        "rclpy": rclpy_present,
        # ROS 2 from PyPI (ros-rclpy wheel); None on a ROS install, where rclpy is not a pip distribution.
        "rclpy_wheel_version": _dist_version("ros-rclpy") if rclpy_present else None,
        "messages_built": bool(messages),
        "messages_path": messages[0] if messages else None,
        "rmw_implementation": os.environ.get("RMW_IMPLEMENTATION"),
        "ros_domain_id": os.environ.get("ROS_DOMAIN_ID"),
    }


def _device_status(torch: Any, torch_error: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {"cpu_count": os.cpu_count(), "cuda_available": False, "cuda_version": None,
                              "gpus": [], "torch_threads": None, "reason": None}
    if torch is None:
        device["reason"] = f"torch does not import ({torch_error})"
        return device
    device["torch_threads"] = torch.get_num_threads()
    device["cuda_version"] = torch.version.cuda
    if torch.version.cuda is None:
        device["reason"] = "this torch build has no CUDA support"
    elif not torch.cuda.is_available():
        device["reason"] = "no CUDA device visible to torch"
    else:
        device["cuda_available"] = True
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            device["gpus"].append({"index": i, "name": props.name,
                                   "memory_gib": round(props.total_memory / 2**30, 1),
                                   "compute_capability": f"{props.major}.{props.minor}"})
    return device


def _backend(name: str, device: str, available: bool, reason: str) -> dict[str, Any]:
    return {"name": name, "device": device, "available": available, "reason": reason}


def _backends(packages: dict[str, dict[str, Any]], providers: list[str], device: dict[str, Any]) -> list[dict]:
    """One entry per (backend, device) of hle_core.runtime, with why it is or is not available."""
    torch_ok, ort_ok, trt_ok = (packages[n]["importable"] for n in ("torch", "onnxruntime", "tensorrt"))
    cuda, no_cuda = device["cuda_available"], device["reason"] or ""
    ort = f"onnxruntime {packages['onnxruntime']['version']}"
    out = [
        _backend("torch", "cpu", torch_ok,
                 f"torch {packages['torch']['version']}" if torch_ok else f"torch: {packages['torch']['error']}"),
        _backend("torch", "cuda", torch_ok and cuda,
                 "CUDA device available" if torch_ok and cuda else no_cuda),
    ]
    if not ort_ok:
        reason = f"onnxruntime: {packages['onnxruntime']['error']}"
        out += [_backend("onnxruntime", "cpu", False, reason), _backend("onnxruntime", "cuda", False, reason)]
    else:
        cpu_ep = "CPUExecutionProvider" in providers
        out.append(_backend("onnxruntime", "cpu", cpu_ep,
                            f"{ort}, CPUExecutionProvider" if cpu_ep else f"{ort} lists no CPUExecutionProvider"))
        if "CUDAExecutionProvider" not in providers:
            out.append(_backend("onnxruntime", "cuda", False,
                                f"{ort} has no CUDAExecutionProvider (the onnxruntime-gpu package has it)"))
        else:
            out.append(_backend("onnxruntime", "cuda", cuda,
                                f"{ort}, CUDAExecutionProvider" if cuda else no_cuda))
    if not trt_ok:
        out.append(_backend("tensorrt", "cuda", False, f"tensorrt: {packages['tensorrt']['error']}"))
    else:
        out.append(_backend("tensorrt", "cuda", cuda,
                            f"tensorrt {packages['tensorrt']['version']}" if cuda else no_cuda))
    return out


def collect() -> dict[str, Any]:
    """Everything ``hle info`` reports, as one JSON-serialisable dict."""
    packages: dict[str, dict[str, Any]] = {}
    modules: dict[str, Any] = {}
    for module_name, dist in PACKAGES:
        packages[module_name], modules[module_name] = _probe_package(module_name, dist)
    ort = modules["onnxruntime"]
    providers = list(ort.get_available_providers()) if ort is not None else []
    device = _device_status(modules["torch"], packages["torch"]["error"])
    return {
        "hle": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable, "platform": platform.platform()},
        "packages": packages,
        "onnxruntime_providers": providers,
        "ros": _ros_status(),
        "device": device,
        "backends": _backends(packages, providers, device),
    }


# ---- text ---------------------------------------------------------------------------------------------------
def format_text(report: dict[str, Any]) -> str:
    """Human-readable form of :func:`collect`'s report."""
    py = report["python"]
    lines = [f"hle {report['hle']}", f"  {'python':<12} {py['version']} ({py['executable']})"]
    for name, info in report["packages"].items():
        if info["importable"]:
            text = info["version"] or "importable (version unknown)"
            if name == "onnxruntime":
                text += f" (providers: {', '.join(report['onnxruntime_providers']) or 'none'})"
        else:
            text = "not importable: " + info["error"] + (f" (installed: {info['version']})" if info["version"] else "")
        lines.append(f"  {name:<12} {text}")
    ros = report["ros"]
    rclpy = ("present" + (f" (ros-rclpy {ros['rclpy_wheel_version']})" if ros["rclpy_wheel_version"] else "")
             if ros["rclpy"] else "not found")
    msgs = f"built ({ros['messages_path']})" if ros["messages_built"] else "not built (run `make setup` or colcon)"
    lines += [f"  {'rclpy':<12} {rclpy}", f"  {'hle_ros.msg':<12} {msgs}"]

    dev = report["device"]
    lines.append("device")
    if dev["cuda_available"]:
        lines.append(f"  CUDA {dev['cuda_version']}")
        lines += [f"  GPU {g['index']}: {g['name']} ({g['memory_gib']} GiB, sm {g['compute_capability']})"
                  for g in dev["gpus"]]
    else:
        lines.append(f"  CPU only: {dev['reason']}")
    lines.append(f"  {dev['cpu_count']} CPUs" + (f", torch threads {dev['torch_threads']}"
                                                   if dev["torch_threads"] is not None else ""))
    lines.append("inference backends ([x] available here)")
    for b in report["backends"]:
        mark = "x" if b["available"] else " "
        lines.append(f"  [{mark}] {b['name'] + ' (' + b['device'] + ')':<20} {b['reason']}")
    return "\n".join(lines)
