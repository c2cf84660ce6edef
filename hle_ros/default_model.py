"""Where the shipped default model is: the node's ``model`` parameter left empty means this file.

The model (``models/hle_street.pt``, decoder thresholds tuned and stored in it; ``hle_street.decoder.yaml`` is
that section on its own) is looked up, in this order, in

1. the package's share directory from the ament index (``share/hle_ros/models``; a colcon install, where
   CMakeLists.txt installs ``models/``),
2. ``<sys.prefix>/share/hle_ros/models`` (a pip install that ships the models as data files),
3. the source checkout this module lives in (``<checkout>/models``; ``pip install -e .``, ``make setup``).

The first directory holding the file wins. No ROS import is required (the ament index is optional), so
parameter validation stays testable without ROS.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["DEFAULT_MODEL_FILE", "DEFAULT_MODEL_INPUT_SIZE", "DefaultModel", "find_default_model",
           "default_model_candidates", "PACKAGE"]

PACKAGE = "hle_ros"
#: File name of the shipped default model inside ``models/``.
DEFAULT_MODEL_FILE = "hle_street.pt"
#: Network input ``(H, W)`` the node uses for the default model when input_height / input_width are 0: the
#: model's 256 x 512 training scenes at its test scale (``hle.model.test_scale`` 1.5, the resolution its accuracy
#: was measured at), with letterbox (config/panoptic.yaml documents why; a test keeps it equal to the model's).
DEFAULT_MODEL_INPUT_SIZE = (384, 768)


@dataclass(frozen=True)
class DefaultModel:
    """The outcome of :func:`find_default_model`: the file (None when not found) and every place looked at."""

    path: Path | None
    searched: tuple[Path, ...]
    source: str = ""                      # "ament index" | "sys.prefix share" | "source checkout" | ""

    def missing_reason(self) -> str:
        looked = ", ".join(str(p) for p in self.searched) or "nowhere (no candidate directory)"
        return f"the shipped default model {DEFAULT_MODEL_FILE} was not found (looked in: {looked})"


def _ament_share() -> Path | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:                   # no ament index (a plain pip environment without the ROS wheels)
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, LookupError, ValueError, OSError):   # OSError: AMENT_PREFIX_PATH unset
        return None


def default_model_candidates() -> list[tuple[str, Path]]:
    """``(source, directory)`` pairs in lookup order (directories may not exist)."""
    out: list[tuple[str, Path]] = []
    share = _ament_share()
    if share is not None:
        out.append(("ament index", share / "models"))
    out.append(("sys.prefix share", Path(sys.prefix) / "share" / PACKAGE / "models"))
    out.append(("source checkout", Path(__file__).resolve().parents[1] / "models"))
    return out


def find_default_model(candidates: Iterable[tuple[str, Path]] | None = None) -> DefaultModel:
    """The first ``<directory>/hle_street.pt`` that is a file among ``candidates``
    (default: :func:`default_model_candidates`)."""
    searched: list[Path] = []
    for source, directory in (default_model_candidates() if candidates is None else candidates):
        path = Path(directory) / DEFAULT_MODEL_FILE
        if path in searched:
            continue
        searched.append(path)
        if path.is_file():
            return DefaultModel(path, tuple(searched), source)
    return DefaultModel(None, tuple(searched))
