"""Checkpoints: a state dict plus the resolved model config, loadable with ``torch.load(weights_only=True)``.

Layout (a plain dict of tensors, strings and numbers, nothing pickled beyond what weights_only allows)::

    {"format": "hle-checkpoint", "version": 1, "config": <HLEConfig JSON string>,
     "model": <state dict>, "optimizer": <state dict or None>, "scheduler": ..., "step": int,
     "extra": <JSON string>}

Writes are atomic (temporary file in the same directory, fsync, ``os.replace``) so a crash never leaves a
half-written checkpoint under the final name. A full disk is reported as such (:class:`CheckpointError`
"disk full while writing <path>"), the earlier file under the final name left as it was; the temporary files of a
save that was killed are removed by :func:`remove_partial_checkpoints` (``hle train`` calls it at start-up).
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, HLEConfig
from .network import HLENet, build_model

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "release_checkpoint",
           "remove_partial_checkpoints"]

FORMAT = "hle-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not an HLE checkpoint."""


def save_checkpoint(path: str | Path, model: HLENet, *, optimizer: Any = None, scheduler: Any = None,
                    step: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model`` (and optionally optimizer / scheduler state) with its config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model   # unwrap DistributedDataParallel
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": module.cfg.to_json(),
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "extra": json.dumps(extra or {}),
    }
    _atomic_save(payload, path)
    return path


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class _Writer:
    """A file for ``torch.save`` that remembers the OSError of a failed write (torch may re-raise it as a
    RuntimeError without the errno)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as exc:
            self.error = exc
            raise


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _raise_if_disk_full(exc, None, path)
        raise
    writer = None
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = _Writer(fh)
            torch.save(payload, writer)
            writer.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)          # mkstemp creates 0600; a checkpoint is an ordinary, shareable file
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _raise_if_disk_full(exc, writer.error if writer is not None else None, path)
        raise


def _raise_if_disk_full(exc: BaseException, write_error: OSError | None, path: Path) -> None:
    """Turn a failed save on a full disk (ENOSPC / EDQUOT, raised or swallowed into a torch RuntimeError) into one
    clear :class:`CheckpointError`; return for any other failure."""
    full = [e for e in (exc, write_error, exc.__context__, exc.__cause__)
            if isinstance(e, OSError) and e.errno in _DISK_FULL]
    if not full:
        return
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
    raise CheckpointError(f"disk full while writing {path} ({full[0].strerror}); {kept}; free some space and "
                          f"resume from the last complete checkpoint") from exc


#: The temporary file names of :func:`_atomic_save` (``tempfile.mkstemp``: 8 random characters).
_PARTIAL = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def remove_partial_checkpoints(directory: str | Path, names: tuple[str, ...] = ("last.pt", "final.pt")) -> list[Path]:
    """Delete the temporary files that a save of one of ``names`` killed half-way left in ``directory``
    (``.last.pt.XXXXXXXX.tmp``); returns what was deleted. Run it at the start of a run that writes there, when
    no save of that run is in progress."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        m = _PARTIAL.fullmatch(entry.name)
        if m and m.group("name") in names and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return sorted(removed)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; returns the payload with ``config`` parsed into an :class:`HLEConfig`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text:     # torch's multi-paragraph advice to unpickle: never taken here
            why = ": it holds objects that safe (weights_only) loading refuses, so it is not an HLE checkpoint"
        else:
            why = f" (truncated or corrupt?): {next((ln.strip() for ln in text.splitlines() if ln.strip()), '')[:200]}"
        raise CheckpointError(f"cannot read checkpoint {path}{why}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an HLE checkpoint (no format={FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} unsupported (expected {VERSION})")
    try:
        payload["config"] = HLEConfig.from_json(payload["config"])
        payload["extra"] = json.loads(payload.get("extra") or "{}")
    except (ConfigError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid embedded config: {exc}") from exc
    return payload


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> HLENet:
    """Rebuild the network from a checkpoint's own config and load its weights (strict), in eval mode."""
    payload = load_checkpoint(path, map_location)
    cfg: HLEConfig = payload["config"]
    cfg.model.pretrained = None          # weights come from the checkpoint, never from ImageNet files
    model = build_model(cfg)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the embedded config: {exc}") from exc
    return model.to(map_location).eval()


def release_checkpoint(src: str | Path, dst: str | Path, *, half: bool = True) -> Path:
    """A deployable copy of a training checkpoint: weights and config only (no optimizer / scheduler state),
    floating-point weights stored as float16 when ``half`` (half the file; :func:`load_model` loads them back
    into the float32 network). ``extra`` records the source step and the storage precision."""
    payload = load_checkpoint(src)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in payload["model"].items()}
    extra = {**payload["extra"], "released_from": {"path": str(src), "step": int(payload.get("step", 0))},
             "weights_dtype": "float16" if half else "float32"}
    extra.pop("train_state", None)
    out = {"format": FORMAT, "version": VERSION, "config": payload["config"].to_json(), "model": state,
           "optimizer": None, "scheduler": None, "step": int(payload.get("step", 0)), "extra": json.dumps(extra)}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(out, dst)
    return dst
