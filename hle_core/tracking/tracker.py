"""Tracking by temporally stable mean embeddings (paper §4.5).

§4.5 shows that HLE's embeddings of the same object stay close across video frames and suggests them "as a
feature for cross-frame data association". :class:`EmbeddingTracker` does exactly that for the decoder's thing
segments: each track keeps a running mean embedding μ_t (an EMA on the unit sphere); a frame's segments are
associated to tracks by the cosine distance ``d_cos(μ_t, e_s) = 1 - μ_t·e_s`` of eq. 7, gated by class, box
overlap, box-centre distance and a maximum cosine distance, with one Hungarian assignment per frame (or a
matching cascade).

Why a spatial gate: the embedding is only half of HLE's instance kernel. Eq. 8 multiplies the embedding kernel by
a separate *spatial* factor ``exp(-||ρ_i - ρ_l||² / (2 σ_spatial²))``, so the embedding itself need not (and with a
weak model does not) encode where an instance is: two cars of the same class far apart can have near-identical
mean embeddings, and a pure-embedding cost then swaps them whenever noise makes the other one closer, above all
for a lost track that may match anywhere. ``max_center_distance`` restores the missing position cue as a gate:
a track only matches detections whose box centre lies within that many box sizes of its last box
(:func:`~hle_core.tracking.association.center_distance_matrix`), widened by ``center_distance_growth`` box sizes
per frame the track has been lost. ``embedding_weight < 1`` adds ``1 - IoU`` to the cost, which separates
look-alikes that are close together.

Life cycle (SORT / DeepSORT style):
  * an unmatched detection starts a *tentative* track, unless it scores below ``min_birth_score`` or (with
    ``max_birth_overlap < 1``) its box lies mostly inside the box of a same-class detection that a track holds in
    this frame: a fragment of an object that is already tracked (a weak decoder splits large things into
    several segments, whose tracks then trade the object's identity among themselves);
  * a tentative track is *confirmed* after ``min_hits`` consecutive matches and only then receives a public
    track id (so one-frame false positives never consume or show an id); a tentative track that misses a
    frame is deleted;
  * a confirmed track that goes unmatched is kept, "lost", for up to ``max_age`` frames and can be
    re-identified in that time (by embedding, even far from where it was lost when ``iou_gate`` and
    ``max_center_distance`` are 0); after ``max_age`` consecutive misses it is deleted and a returning object
    gets a new id;
  * with ``cascade`` the assignment runs in stages (DeepSORT's matching cascade): confirmed tracks by the number
    of frames since their last match (0 first), tentative tracks last, each stage on the detections left, so a
    fresh tentative track (e.g. of a fragment of an object) cannot take the detection of an established track.

Output: per detection the int64 track id (1, 2, 3, … in order of confirmation, never reused until
:meth:`EmbeddingTracker.reset`), or ``-1`` for stuff segments and detections held by a tentative track.

``TrackerConfig(use_embeddings=False)`` is the box-overlap-only baseline with the same gating, assignment and
life cycle (cost ``1 - IoU``), used to measure what the embeddings add. ``hle tune-tracker``
(:mod:`hle_core.tracking.tune`) scores a grid of configurations on a video bag.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hle_core.config import ConfigError, in_range, range_text, setting, setting_range
from hle_core.tracking.association import (
    assign,
    box_coverage_matrix,
    box_iou_matrix,
    cascade_assign,
    center_distance_matrix,
    cosine_distance_matrix,
)

__all__ = [
    "UNTRACKED",
    "TrackerConfig",
    "Detections",
    "TrackState",
    "EmbeddingTracker",
    "detections_from_segments",
    "load_tracker_config",
]

#: Track id returned for stuff segments and for detections of not yet confirmed (tentative) tracks.
UNTRACKED = -1


@dataclass
class TrackerConfig:
    """Association gates, cost weights and track life cycle of :class:`EmbeddingTracker` (module docstring).

    Defaults: chosen by ``hle tune-tracker`` on a synthetic video of seed 31337 with the shipped model
    (docs/RESULTS.md, tracking section; reported on another seed). Every field is a key of the YAML ``tracker:``
    section (:func:`load_tracker_config`, ``hle bag-eval --tracker-config``, ``hle tune-tracker``'s output) and a
    ``tracking.*`` parameter of the ROS node.
    """

    # Each field carries its valid range and description (hle_core.config.setting): validate() below and the
    # node's tracking.* parameters (hle_ros.parameters) read them from here.
    use_embeddings: bool = setting(True, "associate by mean embeddings (false: box-overlap-only baseline: cost "
                                         "1 - IoU, no embedding gate)")
    max_cosine_distance: float = setting(0.15, "cosine-distance gate between a track's mean embedding and a "
                                               "detection: pairs above it never match", 0.0, 2.0)
    iou_gate: float = setting(0.0, "minimum box IoU for a match (0 disables the gate; box-only mode: IoU > 0)",
                              0.0, 1.0)
    class_gating: bool = setting(True, "matches must share the category id")
    embedding_weight: float = setting(0.5, "cost = w·d_cos + (1 - w)·(1 - IoU) in embedding mode", 0.0, 1.0)
    min_hits: int = setting(2, "consecutive matches (birth included) before a track is confirmed and gets a "
                               "public id", 1, 1000)
    max_age: int = setting(30, "frames a lost (unmatched) confirmed track is kept for re-identification",
                           0, 100000)
    momentum: float = setting(0.8, "EMA momentum of a track's mean embedding: μ ← normalise(momentum·μ + "
                                   "(1 - momentum)·e) after each match", 0.0, 1.0, open_hi=True)
    min_birth_score: float = setting(0.0, "detections scoring below this continue tracks but never start one",
                                     0.0, 1.0)
    max_center_distance: float = setting(2.0, "spatial gate: box-centre distance to a track's last box, in mean "
                                              "box sizes (center_distance_matrix); 0 disables", 0.0, 1e6)
    center_distance_growth: float = setting(0.5, "the centre gate widens by this many box sizes per frame a "
                                                 "track is lost (needs the gate)", 0.0, 1e6)
    cascade: bool = setting(True, "matching cascade: confirmed tracks by frames since their last match first, "
                                  "tentative tracks last, each stage on the detections left")
    max_birth_overlap: float = setting(0.7, "a detection covered by more than this fraction by a same-class "
                                            "tracked detection's box starts no track (fragments; 1 disables)",
                                       0.0, 1.0, open_lo=True)

    def validate(self) -> None:
        for name in ("max_cosine_distance", "iou_gate", "embedding_weight", "max_birth_overlap", "momentum",
                     "min_birth_score"):
            value, bounds = getattr(self, name), setting_range(TrackerConfig, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not in_range(value, *bounds):
                raise ConfigError(f"tracker.{name} must lie in {range_text(*bounds)}, got {value!r}")
        for name in ("min_hits", "max_age"):
            value, (lo, hi, _, _) = getattr(self, name), setting_range(TrackerConfig, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"tracker.{name} must be an integer in [{lo}, {hi}], got {value!r}")
        for name in ("max_center_distance", "center_distance_growth"):
            value, (lo, hi, _, _) = getattr(self, name), setting_range(TrackerConfig, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"tracker.{name} must be a finite number >= 0 (at most {hi:g}), got {value!r}")
        if self.center_distance_growth > 0.0 and self.max_center_distance == 0.0:
            raise ConfigError("tracker.center_distance_growth needs the centre gate: set max_center_distance > 0")
        for name in ("use_embeddings", "class_gating", "cascade"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"tracker.{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrackerConfig":
        """Build from a mapping (e.g. a YAML ``tracker:`` section); unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown tracker keys {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls(**dict(data))
        cfg.validate()
        return cfg


def load_tracker_config(path: str | Path) -> TrackerConfig:
    """The :class:`TrackerConfig` of a YAML file: its ``tracker:`` section (as ``hle tune-tracker`` writes it), or
    the whole file when it has none; missing keys take their defaults.

    Raises:
        FileNotFoundError: no such file. ConfigError: not a mapping, unknown keys or invalid values.
    """
    from ..config import read_yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tracker config not found: {path}")
    data = read_yaml(path) or {}
    if isinstance(data, Mapping) and "tracker" in data:
        data = data["tracker"] or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping (a 'tracker:' section), got {type(data).__name__}")
    try:
        return TrackerConfig.from_dict(data)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _to_numpy(x: Any) -> np.ndarray:
    """NumPy view of an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _normalise(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to unit norm (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


@dataclass
class Detections:
    """One frame's segments, as the tracker consumes them. Inputs may be NumPy arrays or torch tensors.

    Attributes:
        class_ids: ``(S,)`` int64 category ids (``ClassTable`` ids, not contiguous indices).
        boxes: ``(S, 4)`` float64 boxes ``x0, y0, x1, y1`` in pixels.
        embeddings: ``(S, D)`` float64 segment embeddings; normalised to unit norm here (a segment's mean of
            unit pixel embeddings is shorter than 1).
        scores: ``(S,)`` float64 segment confidences.
        is_thing: ``(S,)`` bool; only things are tracked.
        segment_ids: ``(S,)`` int64 the decoder's segment ids (default ``0..S-1``), carried for
            :func:`hle_core.evaluation.video.relabel_with_tracks`.
    """

    class_ids: Any
    boxes: Any
    embeddings: Any
    scores: Any
    is_thing: Any
    segment_ids: Any = None

    def __post_init__(self) -> None:
        self.class_ids = _to_numpy(self.class_ids).astype(np.int64).reshape(-1)
        s = self.class_ids.shape[0]
        boxes = _to_numpy(self.boxes).astype(np.float64)
        if boxes.size == 0 and s == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.shape != (s, 4):
            raise ValueError(f"boxes must have shape ({s}, 4) (x0, y0, x1, y1), got {boxes.shape}")
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise ValueError("boxes must satisfy x1 >= x0 and y1 >= y0 (x0, y0, x1, y1 order)")
        self.boxes = boxes
        emb = _to_numpy(self.embeddings).astype(np.float64)
        if s == 0 and emb.ndim != 2:
            emb = emb.reshape(0, 0)
        if emb.ndim != 2 or emb.shape[0] != s:
            raise ValueError(f"embeddings must have shape ({s}, D), got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise ValueError("embeddings contain NaN or inf")
        self.embeddings = _normalise(emb)
        self.scores = _to_numpy(self.scores).astype(np.float64).reshape(-1)
        self.is_thing = _to_numpy(self.is_thing).astype(bool).reshape(-1)
        ids = np.arange(s, dtype=np.int64) if self.segment_ids is None else _to_numpy(self.segment_ids)
        self.segment_ids = ids.astype(np.int64).reshape(-1)
        for name in ("scores", "is_thing", "segment_ids"):
            if getattr(self, name).shape != (s,):
                raise ValueError(f"{name} must have shape ({s},) like class_ids, got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    @classmethod
    def empty(cls, embedding_dim: int = 0) -> "Detections":
        """A frame without segments."""
        return cls(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros((0, embedding_dim)), np.zeros(0),
                   np.zeros(0, bool))


def detections_from_segments(ids: Any, category_ids: Any, is_thing: Any, scores: Any, boxes: Any,
                             embeddings: Any) -> Detections:
    """:class:`Detections` from the decoder's per-segment tensors (a ``PanopticResult``'s fields).

    Args:
        ids: ``(S,)`` segment ids as they appear in the panoptic map.
        category_ids: ``(S,)`` category ids.
        is_thing: ``(S,)`` bool.
        scores: ``(S,)`` segment scores.
        boxes: ``(S, 4)`` x0, y0, x1, y1.
        embeddings: ``(S, D)`` mean segment embeddings (normalised here).
    """
    return Detections(class_ids=category_ids, boxes=boxes, embeddings=embeddings, scores=scores,
                      is_thing=is_thing, segment_ids=ids)


@dataclass(frozen=True)
class TrackState:
    """Read-only snapshot of one live track."""

    track_id: int                       # public id; -1 while tentative
    class_id: int
    box: np.ndarray = field(repr=False)  # (4,) last matched box
    mean_embedding: np.ndarray = field(repr=False)  # (D,) unit-norm EMA of matched embeddings
    hits: int                           # consecutive matched frames
    misses: int                         # consecutive unmatched frames

    @property
    def confirmed(self) -> bool:
        return self.track_id != UNTRACKED


@dataclass
class _Track:
    track_id: int
    class_id: int
    box: np.ndarray
    mean: np.ndarray
    hits: int = 1
    misses: int = 0


class EmbeddingTracker:
    """Associates thing segments across frames by their mean embeddings (§4.5); see the module docstring."""

    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else TrackerConfig()
        if not isinstance(self.cfg, TrackerConfig):
            raise TypeError(f"cfg must be a TrackerConfig, got {type(self.cfg).__name__}")
        self.cfg.validate()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1 (a new sequence)."""
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._dim: int | None = None
        self.frame_index = 0

    @property
    def tracks(self) -> tuple[TrackState, ...]:
        """Live tracks (confirmed, lost within ``max_age``, tentative), oldest first."""
        return tuple(TrackState(t.track_id, t.class_id, t.box.copy(), t.mean.copy(), t.hits, t.misses)
                     for t in self._tracks)

    # ------------------------------------------------------------------------------------------------
    def cost_matrix(self, det: Detections) -> np.ndarray:
        """Gated association cost between the live tracks and ``det``'s thing segments.

        Returns:
            ``(T, S_thing)`` float64; ``+inf`` for pairs closed by a gate (class, box IoU, centre distance, cosine
            distance).
        """
        cfg = self.cfg
        things = np.flatnonzero(det.is_thing)
        if not self._tracks or things.size == 0:
            return np.zeros((len(self._tracks), things.size))
        track_boxes = np.stack([t.box for t in self._tracks])             # T x 4
        iou = box_iou_matrix(track_boxes, det.boxes[things])              # T x S
        if cfg.use_embeddings:
            means = np.stack([t.mean for t in self._tracks])              # T x D
            d_cos = cosine_distance_matrix(means, det.embeddings[things])  # T x S
            cost = cfg.embedding_weight * d_cos + (1.0 - cfg.embedding_weight) * (1.0 - iou)
            gate = d_cos <= cfg.max_cosine_distance
        else:
            cost = 1.0 - iou
            gate = iou > 0.0
        if cfg.iou_gate > 0.0:
            gate &= iou >= cfg.iou_gate
        if cfg.max_center_distance > 0.0:
            gate &= center_distance_matrix(track_boxes, det.boxes[things]) <= self._center_gate_radius()[:, None]
        if cfg.class_gating:
            track_cls = np.array([t.class_id for t in self._tracks], dtype=np.int64)
            gate &= track_cls[:, None] == det.class_ids[things][None, :]
        return np.where(gate, cost, np.inf)

    def update(self, detections: Detections | Mapping[str, Any]) -> np.ndarray:
        """Associate one frame's segments with the tracks and advance the life cycle by one frame.

        Args:
            detections: a :class:`Detections`, or a mapping with its field names (``class_ids``, ``boxes``,
                ``embeddings``, ``scores``, ``is_thing``, optional ``segment_ids``).
        Returns:
            ``(S,)`` int64 track id per segment: a confirmed id (>= 1), or ``-1`` (:data:`UNTRACKED`) for stuff
            segments and segments held by a tentative track.
        Raises:
            TypeError: ``detections`` is neither :class:`Detections` nor a mapping.
            ValueError: inconsistent shapes, or an embedding dimension different from earlier frames.
        """
        det = self._as_detections(detections)
        cfg = self.cfg
        out = np.full(len(det), UNTRACKED, dtype=np.int64)
        things = np.flatnonzero(det.is_thing)
        if things.size:
            dim = det.embeddings.shape[1]
            if self._dim is None:
                self._dim = dim
            elif dim != self._dim:
                raise ValueError(f"embedding dimension changed from {self._dim} to {dim}; call reset() "
                                 "between sequences of different models")

        rows, cols = self._associate(self.cost_matrix(det))
        matched_tracks = np.zeros(len(self._tracks), dtype=bool)
        matched_tracks[rows] = True
        matched_dets = np.zeros(things.size, dtype=bool)
        matched_dets[cols] = True

        for r, c in zip(rows.tolist(), cols.tolist()):                     # matched pairs only
            t, s = self._tracks[r], int(things[c])
            t.box = det.boxes[s].copy()
            t.mean = _normalise(cfg.momentum * t.mean + (1.0 - cfg.momentum) * det.embeddings[s])
            t.class_id = int(det.class_ids[s])
            t.hits += 1
            t.misses = 0
            if t.track_id == UNTRACKED and t.hits >= cfg.min_hits:
                t.track_id = self._new_id()
            out[s] = t.track_id

        survivors = []
        for t, matched in zip(self._tracks, matched_tracks.tolist()):
            if not matched:
                t.hits = 0
                t.misses += 1
                if t.track_id == UNTRACKED or t.misses > cfg.max_age:
                    continue                                               # tentative miss or too old: dies
            survivors.append(t)
        self._tracks = survivors

        held = things[cols].tolist()                                       # detections of a track so far
        for s in things[~matched_dets].tolist():                           # births, in detection order
            if det.scores[s] < cfg.min_birth_score or self._is_fragment(det, s, held):
                continue
            held.append(s)
            t = _Track(UNTRACKED, int(det.class_ids[s]), det.boxes[s].copy(), det.embeddings[s].copy())
            if cfg.min_hits <= 1:
                t.track_id = self._new_id()
            out[s] = t.track_id
            self._tracks.append(t)

        self.frame_index += 1
        return out

    # ------------------------------------------------------------------------------------------------
    def _center_gate_radius(self) -> np.ndarray:
        """``(T,)`` centre-gate radius per track in box sizes: wider the longer a track has been lost."""
        misses = np.array([t.misses for t in self._tracks], dtype=np.float64)
        return self.cfg.max_center_distance + self.cfg.center_distance_growth * misses

    def _cascade_priority(self) -> np.ndarray:
        """``(T,)`` stage of each track in the matching cascade: frames since its last match for confirmed tracks,
        after all of them the tentative ones."""
        misses = np.array([t.misses for t in self._tracks], dtype=np.int64)
        tentative = np.array([t.track_id == UNTRACKED for t in self._tracks], dtype=bool)
        return np.where(tentative, self.cfg.max_age + 1, misses)

    def _associate(self, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matched (track, thing) index pairs: one Hungarian assignment, or the cascade of ``cfg.cascade``."""
        if self.cfg.cascade and len(self._tracks):
            return cascade_assign(cost, self._cascade_priority())
        return assign(cost)

    def _is_fragment(self, det: Detections, s: int, held: list[int]) -> bool:
        """Whether detection ``s``'s box is covered by more than ``max_birth_overlap`` by the box of a same-class
        detection in ``held`` (a fragment of an object that already has a track: it starts none)."""
        if self.cfg.max_birth_overlap >= 1.0 or not held:
            return False
        held_idx = np.asarray(held, dtype=np.int64)
        coverage = box_coverage_matrix(det.boxes[s:s + 1], det.boxes[held_idx])[0]
        same_class = det.class_ids[held_idx] == det.class_ids[s]
        return bool(np.any(same_class & (coverage > self.cfg.max_birth_overlap)))

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    @staticmethod
    def _as_detections(detections: Detections | Mapping[str, Any]) -> Detections:
        if isinstance(detections, Detections):
            return detections
        if isinstance(detections, Mapping):
            known = {f.name for f in fields(Detections)}
            unknown = set(detections) - known
            if unknown:
                raise ValueError(f"unknown detection fields {sorted(unknown)}; expected {sorted(known)}")
            return Detections(**detections)
        raise TypeError(f"detections must be a Detections or a mapping of arrays, got {type(detections).__name__}")
