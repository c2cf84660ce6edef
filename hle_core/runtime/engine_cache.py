"""TensorRT engine cache: build an engine from an ONNX file once, reuse it, and never load a stale or foreign one.

A serialized TensorRT engine is only valid for the TensorRT version and the GPU (name and compute
capability) that built it, for the exact ONNX graph, precision, input profile and workspace it was built
with. Every engine therefore travels with a JSON sidecar (``<engine>.json``) holding its :class:`EngineKey`,
the engine bytes' SHA-256 and the ONNX file's HLE metadata (config, decode parameters, I/O shapes)::

    {"format": "hle-engine", "version": 1, "key": {...EngineKey...}, "key_digest": "<sha256>",
     "engine_sha256": "<sha256>", "onnx_path": "...", "onnx_io": {"inputs": {...}, "outputs": {...}},
     "metadata": {<ONNX metadata_props>}}

:class:`EngineCache` names each engine after its key's digest, so a change of any component gives a new
file; a cached file is reused only when its sidecar's key equals the current key field by field and the
engine bytes still hash to the recorded value (else it is rebuilt). :func:`verify_engine` is the check
for an engine file handed over explicitly: a mismatch raises :class:`ForeignEngineError` naming the fields.
A sidecar that is not a JSON object of this format (any malformed file) is a cache miss with the reason logged.

Other cached files (the checkpoint → ONNX export of :func:`hle_core.runtime.cached_onnx_for_checkpoint`) get the
same content check: :func:`write_file_record` keeps their SHA-256 (and what they were made from) beside them,
:func:`verify_file_record` re-hashes the file before it is served, so a cached file edited or damaged after it
was written is rebuilt, never trusted on a label inside it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..atomic_io import atomic_write_bytes, file_sha256

__all__ = [
    "EngineKey", "EngineCache", "EngineCacheError", "ForeignEngineError", "SIDECAR_FORMAT", "file_sha256",
    "sidecar_path", "read_sidecar", "write_engine", "verify_engine", "key_differences", "default_cache_dir",
    "write_file_record", "verify_file_record",
]

log = logging.getLogger("hle_core.runtime")

SIDECAR_FORMAT = "hle-engine"
SIDECAR_VERSION = 1
FILE_RECORD_FORMAT = "hle-cached-file"
PRECISIONS = ("fp32", "fp16", "int8")


class EngineCacheError(RuntimeError):
    """An engine sidecar is missing or unreadable, or the cache directory cannot be used."""


class ForeignEngineError(EngineCacheError):
    """An engine was built for another TensorRT / GPU / ONNX graph / precision / shape than requested."""


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    ``input_shapes`` is the optimisation profile of ``images`` as ``(min, opt, max)`` ``(B, 3, H, W)`` tuples
    (all three equal for a static graph).
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    onnx_sha256: str
    precision: str
    input_shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    workspace_mb: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.onnx_sha256) != 64:
            raise ValueError(f"onnx_sha256 must be a 64-hex-digit SHA-256, got {self.onnx_sha256!r}")
        if len(self.input_shapes) != 3:
            raise ValueError(f"input_shapes must be (min, opt, max), got {self.input_shapes!r}")
        object.__setattr__(self, "compute_capability", tuple(int(v) for v in self.compute_capability))
        object.__setattr__(self, "input_shapes", tuple(tuple(int(v) for v in s) for s in self.input_shapes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineKey":
        try:
            return cls(tensorrt_version=str(d["tensorrt_version"]), gpu_name=str(d["gpu_name"]),
                       compute_capability=tuple(d["compute_capability"]),  # type: ignore[arg-type]
                       onnx_sha256=str(d["onnx_sha256"]), precision=str(d["precision"]),
                       input_shapes=tuple(tuple(s) for s in d["input_shapes"]),  # type: ignore[arg-type]
                       workspace_mb=int(d["workspace_mb"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineCacheError(f"unreadable engine key {d!r}: {exc}") from exc

    def digest(self) -> str:
        """SHA-256 of the key's canonical JSON: equal keys ⇔ equal digests (up to hash collisions)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def key_differences(expected: EngineKey, found: EngineKey) -> list[str]:
    """``["field: found X, expected Y", ...]`` for every field where the keys differ."""
    a, b = expected.to_dict(), found.to_dict()
    return [f"{k}: engine has {b[k]!r}, expected {a[k]!r}" for k in a if a[k] != b[k]]


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def default_cache_dir() -> Path:
    """``$HLE_CACHE_DIR``, else ``$XDG_CACHE_HOME/hle``, else ``~/.cache/hle``."""
    if os.environ.get("HLE_CACHE_DIR"):
        return Path(os.environ["HLE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hle"


def write_engine(engine_path: str | Path, engine: bytes, key: EngineKey, *, metadata: dict[str, str],
                 onnx_io: dict[str, dict[str, list[int]]], onnx_path: str | Path | None = None) -> Path:
    """Atomically write the engine, then its sidecar (a crash leaves no sidecar, so no reuse)."""
    engine_path = Path(engine_path)
    sidecar = sidecar_path(engine_path)
    sidecar.unlink(missing_ok=True)                           # never a valid sidecar beside a half-new engine
    atomic_write_bytes(engine_path, engine)
    doc = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "key": key.to_dict(), "key_digest": key.digest(),
           "engine_sha256": hashlib.sha256(engine).hexdigest(),
           "onnx_path": str(onnx_path) if onnx_path is not None else None,
           "onnx_io": onnx_io, "metadata": metadata}
    atomic_write_bytes(sidecar, json.dumps(doc, indent=1, sort_keys=True).encode())
    return engine_path


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The sidecar of ``engine_path`` with ``key`` parsed into an :class:`EngineKey`.

    Raises:
        EngineCacheError: missing or unreadable sidecar (an engine without one is never trusted).
    """
    sidecar = sidecar_path(engine_path)
    if not sidecar.is_file():
        raise EngineCacheError(f"{engine_path} has no sidecar {sidecar.name}: its TensorRT version, GPU and source "
                               f"ONNX are unknown, so it is not loaded; rebuild it from the ONNX file "
                               f"(`hle export tensorrt --onnx ... --out {engine_path}`)")
    try:
        doc = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise EngineCacheError(f"unreadable engine sidecar {sidecar}: {exc}") from exc
    if not isinstance(doc, dict):
        raise EngineCacheError(f"{sidecar}: not an HLE engine sidecar (a JSON {type(doc).__name__}, expected an "
                               f"object)")
    if doc.get("format") != SIDECAR_FORMAT or doc.get("version") != SIDECAR_VERSION:
        raise EngineCacheError(f"{sidecar}: not an HLE engine sidecar of version {SIDECAR_VERSION} "
                               f"(format={doc.get('format')!r}, version={doc.get('version')!r})")
    for field in ("key", "engine_sha256", "metadata", "onnx_io"):
        if field not in doc:
            raise EngineCacheError(f"{sidecar}: missing field {field!r}")
    for field, kind in (("key", dict), ("engine_sha256", str), ("metadata", dict), ("onnx_io", dict)):
        if not isinstance(doc[field], kind):
            raise EngineCacheError(f"{sidecar}: field {field!r} is a {type(doc[field]).__name__}, expected a "
                                   f"{kind.__name__}")
    doc["key"] = EngineKey.from_dict(doc["key"])
    return doc


def verify_engine(engine_path: str | Path, expected: EngineKey | None = None, *,
                  environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check an engine file against its sidecar and against what is running; returns the sidecar.

    Args:
        expected: the full key the caller needs (cache lookups); every field must match.
        environment: only ``tensorrt_version``, ``gpu_name``, ``compute_capability`` (an explicitly given
            engine whose source ONNX is not at hand); these fields must match.
    Raises:
        FileNotFoundError: no engine file.
        EngineCacheError: missing / unreadable sidecar.
        ForeignEngineError: bytes that do not hash to the recorded SHA-256, or a key mismatch (fields named).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
    doc = read_sidecar(engine_path)
    found: EngineKey = doc["key"]
    if file_sha256(engine_path) != doc["engine_sha256"]:
        raise ForeignEngineError(f"{engine_path}: engine bytes do not match the SHA-256 its sidecar recorded "
                                 f"(replaced or truncated after it was built)")
    if expected is not None:
        diffs = key_differences(expected, found)
        if diffs:
            raise ForeignEngineError(f"{engine_path} was built for something else: " + "; ".join(diffs))
    if environment is not None:
        env = {k: (list(v) if isinstance(v, tuple) else v) for k, v in environment.items()}
        have = found.to_dict()
        diffs = [f"{k}: engine has {have[k]!r}, running {env[k]!r}" for k in env if have[k] != env[k]]
        if diffs:
            raise ForeignEngineError(f"{engine_path} was built elsewhere: " + "; ".join(diffs))
    return doc


class EngineCache:
    """A directory of engines keyed by :class:`EngineKey`: ``<stem>-<digest[:16]>.engine`` + sidecar."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def path_for(self, key: EngineKey, stem: str = "model") -> Path:
        return self.dir / f"{stem}-{key.digest()[:16]}.engine"

    def lookup(self, key: EngineKey, stem: str = "model") -> Path | None:
        """The cached engine for ``key`` when present and valid; None (with the reason logged) otherwise."""
        path = self.path_for(key, stem)
        if not path.exists():
            return None
        try:
            verify_engine(path, key)
        except (EngineCacheError, OSError) as exc:
            log.warning("cached engine not reused, it will be rebuilt: %s", exc)
            return None
        return path

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], *, metadata: dict[str, str],
                     onnx_io: dict[str, dict[str, list[int]]], onnx_path: str | Path | None = None,
                     stem: str = "model", force_rebuild: bool = False) -> tuple[Path, bool]:
        """Return ``(engine_path, built)``: the valid cached engine, or a fresh one from ``build()``."""
        if not force_rebuild:
            path = self.lookup(key, stem)
            if path is not None:
                log.info("reusing cached TensorRT engine %s", path)
                return path, False
        path = self.path_for(key, stem)
        log.info("building TensorRT engine %s (%s)", path, "forced" if force_rebuild else "no valid cached engine")
        engine = build()
        if not isinstance(engine, (bytes, bytearray)) or not engine:
            raise EngineCacheError(f"engine builder returned {type(engine).__name__} of length "
                                   f"{len(engine) if hasattr(engine, '__len__') else '?'}, expected non-empty bytes")
        write_engine(path, bytes(engine), key, metadata=metadata, onnx_io=onnx_io, onnx_path=onnx_path)
        return path, True


# ----------------------------------------------------------------------------------------------------
# content records of other cached files
def write_file_record(path: str | Path, **fields: str) -> Path:
    """Record ``path``'s SHA-256 and ``fields`` (e.g. ``source_sha256``) in ``<path>.json``, atomically; returns
    the record's path. Write it only after ``path`` itself is complete."""
    path = Path(path)
    doc = {"format": FILE_RECORD_FORMAT, "version": 1, "file": path.name, "sha256": file_sha256(path), **fields}
    record = sidecar_path(path)
    atomic_write_bytes(record, json.dumps(doc, indent=1, sort_keys=True).encode())
    return record


def verify_file_record(path: str | Path, **expected: str) -> None:
    """Check a cached file against its :func:`write_file_record` record: the file's bytes must hash to the recorded
    SHA-256 and every ``expected`` field must equal the recorded one.

    Raises:
        EngineCacheError: no record, an unreadable or malformed one, or any mismatch (the message says which).
    """
    path = Path(path)
    record = sidecar_path(path)
    if not record.is_file():
        raise EngineCacheError(f"{path} has no content record {record.name} (written by an older version, or the "
                               f"write was interrupted)")
    try:
        doc = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise EngineCacheError(f"unreadable content record {record}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FILE_RECORD_FORMAT or not isinstance(doc.get("sha256"), str):
        raise EngineCacheError(f"{record}: not an HLE content record")
    for name, value in expected.items():
        if doc.get(name) != value:
            raise EngineCacheError(f"{path}: recorded {name} {doc.get(name)!r} differs from {value!r}")
    actual = file_sha256(path)
    if actual != doc["sha256"]:
        raise EngineCacheError(f"{path}: content changed after it was cached (SHA-256 {actual[:16]}…, recorded "
                               f"{doc['sha256'][:16]}…)")
