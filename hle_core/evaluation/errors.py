"""Exceptions of the panoptic evaluation: inconsistent or malformed ground truth / prediction inputs.

Every message names what was received (file, image id, segment id) and what was expected. The PNG/JSON
mismatch errors also derive from ``KeyError``, the exception panopticapi raises for the same faults, so code
written against panopticapi keeps catching them.
"""
from __future__ import annotations

__all__ = [
    "PanopticEvalError",
    "PanopticFileNotFoundError",
    "PanopticFormatError",
    "SegmentMismatchError",
    "UnknownCategoryError",
    "MissingPredictionError",
]


class PanopticEvalError(ValueError):
    """Base class: the inputs of a panoptic evaluation are inconsistent or malformed."""


class PanopticFileNotFoundError(PanopticEvalError, FileNotFoundError):
    """A PNG, JSON file or folder the evaluation needs does not exist; the message names the path."""


class PanopticFormatError(PanopticEvalError):
    """A file cannot be read as what it should be (not an 8-bit RGB PNG, malformed JSON, shape mismatch)."""


class _KeyErrorMessage(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class SegmentMismatchError(PanopticEvalError, _KeyErrorMessage):
    """A segment id is in a PNG but not in its JSON ``segments_info``, or the other way round."""


class UnknownCategoryError(PanopticEvalError, _KeyErrorMessage):
    """A segment's ``category_id`` (or a panoptic map's category) is not one of the evaluated categories."""


class MissingPredictionError(PanopticEvalError, _KeyErrorMessage):
    """A ground-truth image has no prediction annotation with the same ``image_id``."""
