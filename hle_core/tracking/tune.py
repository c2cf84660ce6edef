"""Choice of the tracker's gates and weights on a video bag with ground truth (``hle tune-tracker``, paper §4.5).

The network and decoder run once per frame with tracking off (:func:`cache_bag_frames`, through
:func:`hle_core.bags.evaluate_bag` itself, so frame order, sequences, rejections and ground truth are
bag-eval's). Every candidate :class:`~hle_core.tracking.TrackerConfig` then only replays the association on the
cached segments (:func:`replay_tracker`, the detections built as :meth:`hle_core.pipeline.Pipeline._track` builds
them) and is scored by bag-eval's own :class:`~hle_core.bags.scoring.VideoScorer` (:func:`score_tracks`):
ID switches, AQ and STQ are identical to ``hle bag-eval --tracker-config`` with the same configuration.

Objective (:func:`rank_key`): among the *eligible* candidates, the fewest ID switches, ties broken by the higher
AQ, then the higher STQ, then the earlier candidate. Eligible means AQ >= ``min_aq`` (by default the AQ of the
box-overlap-only baseline): a tracker that never confirms a track or loses every identity at once switches ids
rarely while associating nothing, and must not win on switches alone. When no candidate is eligible, all are.

Candidates (:func:`grid_candidates`): the box-overlap-only baseline (``--box-tracker``), the base configuration,
then the product of :data:`DEFAULT_GRID` (or the ``--grid`` values) applied on the base; combinations that
fail :meth:`TrackerConfig.validate` are skipped and duplicates dropped. Scores are memoised on the track ids a
configuration produces, so configurations that associate identically are scored once.

Memory: the panoptic map, the ground truth and the segments of every evaluated frame are held (about
``12 · H · W`` bytes per frame).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hle_core.config import ConfigError
from hle_core.tracking.tracker import Detections, EmbeddingTracker, TrackerConfig, detections_from_segments

__all__ = [
    "DEFAULT_GRID",
    "CachedFrame",
    "FrameCache",
    "TrackerTuneResult",
    "cache_bag_frames",
    "parse_grid",
    "grid_candidates",
    "replay_tracker",
    "score_tracks",
    "rank_key",
    "tune_tracker",
    "write_tracker_yaml",
    "write_candidates",
]

#: Searched values per :class:`TrackerConfig` field (the others keep the base configuration's): 3 · 2 · 5 · 2 · 2
#: = 120 valid combinations (growth > 0 needs a centre gate).
DEFAULT_GRID: dict[str, list[Any]] = {
    "embedding_weight": [1.0, 0.7, 0.5],
    "max_cosine_distance": [0.15, 0.3],
    "max_center_distance": [0.0, 1.0, 2.0],
    "center_distance_growth": [0.0, 0.5],
    "cascade": [False, True],
    "max_birth_overlap": [1.0, 0.7],
}

#: Summary columns of every candidate: name -> value in :func:`score_tracks`' dict.
METRICS = ("id_switches", "AQ", "STQ", "SQ_sem", "VPQ", "confirmed_tracks")


@dataclass
class CachedFrame:
    """One evaluated frame as the tracker and the video scorer need it."""

    sequence: int                       # bag-eval's sequence index (the tracker is reset when it changes)
    panoptic: np.ndarray                # (H, W) int32 predicted panoptic map (per-frame segment ids)
    detections: Detections              # the segments, as Pipeline._track hands them to the tracker
    category_ids: np.ndarray            # (S,) int64
    gt: np.ndarray | None               # (H, W) int32 Cityscapes ground truth when bag-eval scored the frame


@dataclass
class FrameCache:
    """:func:`cache_bag_frames`' result: the frames in processing order, the class table, and bag-eval's metrics of
    the tracking-off pass (frame accounting, PQ)."""

    frames: list[CachedFrame]
    classes: Any
    metrics: dict[str, Any]
    seconds: float

    @property
    def scored(self) -> int:
        return sum(f.gt is not None for f in self.frames)


@dataclass
class TrackerTuneResult:
    """Outcome of :func:`tune_tracker`: one row per candidate (``candidate``, ``name``, ``changes`` against
    ``TrackerConfig()``, ``config``, the :data:`METRICS`, ``eligible``, ``seconds``), the best candidate and
    the AQ floor used."""

    rows: list[dict[str, Any]]
    best_index: int
    best: TrackerConfig
    min_aq: float | None
    skipped: list[str] = field(default_factory=list)

    @property
    def best_row(self) -> dict[str, Any]:
        return self.rows[self.best_index]

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["name"] == name)


# ----------------------------------------------------------------------------------------------------
def cache_bag_frames(bag: str | Path, image_topic: str, gt_topic: str, model: str | Path, *,
                     backend: str = "auto", device: str = "auto", input_size: tuple[int, int] | None = None,
                     resize: str = "letterbox", decoder: Any = None, sequence_gap_s: float = 2.0,
                     max_pixels: int | None = None, progress: bool = True, logger: Any = None) -> FrameCache:
    """Run the pipeline once over the bag with tracking off and keep what the tracker and the scorer need.

    Arguments as for :func:`hle_core.bags.evaluate_bag` (``max_pixels`` None: its default). The pipeline is
    built by :func:`hle_core.runtime.build_pipeline` as bag-eval builds it, without a tracker.
    """
    from hle_core.bags import evaluate_bag
    from hle_core.bags.evaluate import DEFAULT_MAX_PIXELS
    from hle_core.runtime import build_pipeline

    if not Path(model).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    frames: list[CachedFrame] = []

    def keep(sequence: int, result: Any, gt: np.ndarray | None) -> None:
        frames.append(cached_frame(sequence, result, gt))

    t0 = time.perf_counter()
    pipeline = build_pipeline(model, backend, device=device, input_size=input_size, resize=resize, decoder=decoder,
                              tracker=None, logger=logger)
    try:
        metrics = evaluate_bag(bag, image_topic, gt_topic=gt_topic, pipeline=pipeline, sequence_gap_s=sequence_gap_s,
                               max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, num_overlays=0,
                               plots=False, progress=progress, logger=logger, on_frame=keep)
        classes = pipeline.classes
    finally:
        pipeline.close()
    return FrameCache(frames, classes, metrics, time.perf_counter() - t0)


def cached_frame(sequence: int, result: Any, gt: np.ndarray | None) -> CachedFrame:
    """A pipeline ``FrameResult`` (and its ground truth) reduced to a :class:`CachedFrame`."""
    dets = detections_from_segments(result.ids, result.category_ids, result.is_thing, result.scores, result.boxes,
                                    result.embeddings)
    small_gt = None if gt is None else gt.astype(np.int32 if gt.size == 0 or gt.max() < 2**31 else np.int64)
    return CachedFrame(int(sequence), np.asarray(result.panoptic), dets,
                       np.asarray(result.category_ids, dtype=np.int64), small_gt)


# ----------------------------------------------------------------------------------------------------
def replay_tracker(frames: Sequence[CachedFrame], cfg: TrackerConfig) -> list[np.ndarray]:
    """Track ids per frame of a fresh :class:`EmbeddingTracker` over ``frames``, reset at every new sequence
    (as bag-eval resets the pipeline's tracker)."""
    tracker = EmbeddingTracker(cfg)
    out, previous = [], None
    for f in frames:
        if f.sequence != previous:
            tracker.reset()
            previous = f.sequence
        out.append(np.asarray(tracker.update(f.detections), dtype=np.int64))
    return out


def score_tracks(frames: Sequence[CachedFrame], track_ids: Sequence[np.ndarray], classes: Any,
                 vpq: bool = False) -> dict[str, Any]:
    """ID switches, AQ, STQ, SQ_sem (and VPQ with ``vpq``) of ``track_ids`` on the scored frames, by bag-eval's
    :class:`~hle_core.bags.scoring.VideoScorer`; ``confirmed_tracks``: distinct track ids over all frames
    (per sequence, summed). Raises ValueError when no frame has ground truth."""
    from hle_core.bags.scoring import VideoScorer

    scorer = VideoScorer(classes, vpq=vpq)
    for f, ids in zip(frames, track_ids):
        if f.gt is not None:
            scorer.add(f.gt, f.panoptic, f.detections.segment_ids, ids, f.category_ids, f.sequence)
    if not scorer.maps:
        raise ValueError("no frame has ground truth: nothing to score the tracker on")
    res = scorer.result()
    tracks = {(f.sequence, int(t)) for f, ids in zip(frames, track_ids) for t in ids[ids >= 0].tolist()}
    return {"id_switches": res["id_switches"], "AQ": res["stq"]["AQ"], "STQ": res["stq"]["STQ"],
            "SQ_sem": res["stq"]["SQ_sem"], "VPQ": res["vpq"]["VPQ"] if vpq else None,
            "confirmed_tracks": len(tracks)}


# ----------------------------------------------------------------------------------------------------
def parse_grid(items: Sequence[str], grid: Mapping[str, Sequence[Any]] | None = None) -> dict[str, list[Any]]:
    """``["min_hits=1,2,3", "cascade=true"]`` -> ``grid`` (default :data:`DEFAULT_GRID`) with those fields'
    values replaced (a field not in it is added); values parsed as YAML scalars. ``NAME=`` removes a field."""
    import yaml

    out = {k: list(v) for k, v in (DEFAULT_GRID if grid is None else grid).items()}
    known = {f.name for f in dataclasses.fields(TrackerConfig)}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ConfigError(f"--grid expects NAME=V1,V2,... with NAME a TrackerConfig field ({sorted(known)}), "
                              f"got {item!r}")
        if not values.strip():
            out.pop(name, None)
            continue
        parsed = [yaml.safe_load(v) for v in values.split(",")]
        if any(v is None or isinstance(v, (dict, list)) for v in parsed):
            raise ConfigError(f"--grid {item!r}: values must be scalars")
        out[name] = parsed
    return out


def _coerce(name: str, value: Any, base: TrackerConfig) -> Any:
    """``value`` in the type of the field ``name`` (YAML ``1`` for a float field becomes ``1.0``)."""
    kind = type(getattr(base, name))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def grid_candidates(grid: Mapping[str, Sequence[Any]], base: TrackerConfig | None = None
                    ) -> tuple[list[tuple[str, TrackerConfig]], list[str]]:
    """``[(name, config), ...]``: ``box`` (the box-overlap-only baseline of ``hle bag-eval --box-tracker``),
    ``base``, then ``grid-<i>`` (``i``: its index in the list) for every valid new combination of ``grid``
    applied on ``base``; and the descriptions of the skipped (invalid) combinations."""
    base = base if base is not None else TrackerConfig()
    out: list[tuple[str, TrackerConfig]] = [("box", TrackerConfig(use_embeddings=False)), ("base", base)]
    skipped: list[str] = []
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        changes = {n: _coerce(n, v, base) for n, v in zip(names, values)}
        try:
            cfg = dataclasses.replace(base, **changes)
            cfg.validate()
        except (ConfigError, TypeError) as exc:
            skipped.append(f"{changes}: {exc}")
            continue
        if all(cfg != c for _, c in out):
            out.append((f"grid-{len(out)}", cfg))
    return out, skipped


def config_changes(cfg: TrackerConfig, reference: TrackerConfig | None = None) -> dict[str, Any]:
    """The fields of ``cfg`` that differ from ``reference`` (default ``TrackerConfig()``)."""
    reference = reference if reference is not None else TrackerConfig()
    return {k: v for k, v in dataclasses.asdict(cfg).items() if getattr(reference, k) != v}


def rank_key(row: Mapping[str, Any], min_aq: float | None) -> tuple:
    """Sort key of a candidate row, best first: eligible (AQ >= ``min_aq``; None: all are), fewest ID switches,
    higher AQ, higher STQ, earlier candidate."""
    eligible = min_aq is None or row["AQ"] >= min_aq
    stq = row["STQ"] if np.isfinite(row["STQ"]) else -np.inf
    return (not eligible, row["id_switches"], -row["AQ"], -stq, row["candidate"])


def tune_tracker(cache: FrameCache, candidates: Iterable[tuple[str, TrackerConfig]], *,
                 min_aq: float | str | None = "box", vpq: bool = False, progress: bool = False) -> TrackerTuneResult:
    """Score every candidate on ``cache`` and pick the best by :func:`rank_key`.

    Args:
        cache: from :func:`cache_bag_frames` (or built by hand).
        candidates: ``(name, config)`` pairs, e.g. :func:`grid_candidates`.
        min_aq: the AQ floor of eligibility: a number, ``"box"`` (the AQ of the candidate named ``box``, which
            must then be present) or None (no floor).
        vpq: also compute VPQ for every candidate (slower; not part of the objective).
    Returns:
        :class:`TrackerTuneResult`, rows in candidate order.
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no tracker candidates to score")
    if cache.scored == 0:
        raise ValueError("no frame of the bag has ground truth: nothing to tune on (check --gt-topic)")
    memo: dict[bytes, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(candidates), desc="tune-tracker", unit="config", dynamic_ncols=True)
    try:
        for index, (name, cfg) in enumerate(candidates):
            t0 = time.perf_counter()
            ids = replay_tracker(cache.frames, cfg)
            key = _assignment_key(cache.frames, ids)
            if key not in memo:
                memo[key] = score_tracks(cache.frames, ids, cache.classes, vpq=vpq)
            rows.append({"candidate": index, "name": name, "changes": config_changes(cfg),
                         "config": dataclasses.asdict(cfg), **memo[key],
                         "seconds": round(time.perf_counter() - t0, 4)})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(switches=rows[-1]["id_switches"], best=min(r["id_switches"] for r in rows))
    finally:
        if bar is not None:
            bar.close()
    floor = _aq_floor(min_aq, rows)
    if floor is not None and not any(r["AQ"] >= floor for r in rows):
        floor = None                                                  # nobody eligible: rank them all
    for r in rows:
        r["eligible"] = floor is None or r["AQ"] >= floor
    best = min(rows, key=lambda r: rank_key(r, floor))
    return TrackerTuneResult(rows, best["candidate"], candidates[best["candidate"]][1], floor)


def _aq_floor(min_aq: float | str | None, rows: Sequence[Mapping[str, Any]]) -> float | None:
    if min_aq is None or min_aq == "none":
        return None
    if min_aq == "box":
        box = [r for r in rows if r["name"] == "box"]
        if not box:
            raise ValueError("min_aq='box' needs a candidate named 'box' (the box-overlap-only baseline)")
        return float(box[0]["AQ"])
    return float(min_aq)


def _assignment_key(frames: Sequence[CachedFrame], track_ids: Sequence[np.ndarray]) -> bytes:
    """Identical bytes for identical track ids of identical frames: the memo key of :func:`tune_tracker`."""
    return b"".join(np.int64(len(ids)).tobytes() + ids.astype(np.int64).tobytes()
                    for f, ids in zip(frames, track_ids) if f.gt is not None)


# ----------------------------------------------------------------------------------------------------
def write_tracker_yaml(path: str | Path, cfg: TrackerConfig, comment: Sequence[str] = ()) -> Path:
    """Write ``cfg`` as a ``tracker:`` section (every field), loadable with
    :func:`~hle_core.tracking.load_tracker_config` / ``hle bag-eval --tracker-config``; ``comment`` lines on top."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "".join(f"# {line}\n" for line in comment)
    path.write_text(head + yaml.safe_dump({"tracker": dataclasses.asdict(cfg)}, sort_keys=False))
    return path


def candidates_markdown(result: TrackerTuneResult) -> str:
    """The candidate table, best first (the order of :func:`rank_key`), as Markdown."""
    fmt = lambda v: "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else (  # noqa: E731
        f"{100 * v:.2f}" if isinstance(v, float) else str(v))
    floor = "none" if result.min_aq is None else f"{100 * result.min_aq:.2f}"
    lines = [f"Objective: eligible (AQ >= {floor}), then fewest ID switches, then higher AQ, STQ. "
             f"AQ / STQ / SQ_sem / VPQ in %.", "",
             "| rank | candidate | name | ID switches | AQ | STQ | SQ_sem | VPQ | tracks | eligible | changes vs "
             "TrackerConfig() |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rank, r in enumerate(sorted(result.rows, key=lambda r: rank_key(r, result.min_aq)), 1):
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(defaults)"
        lines.append(f"| {rank} | {r['candidate']} | {r['name']} | {r['id_switches']} | {fmt(r['AQ'])} | "
                     f"{fmt(r['STQ'])} | {fmt(r['SQ_sem'])} | {fmt(r['VPQ'])} | {r['confirmed_tracks']} | "
                     f"{'yes' if r['eligible'] else 'no'} | {changes} |")
    return "\n".join(lines) + "\n"


def write_candidates(result: TrackerTuneResult, json_path: str | Path, md_path: str | Path,
                     meta: Mapping[str, Any] | None = None) -> None:
    """All candidates as JSON (with ``meta``, the best and the skipped combinations) and as a Markdown table."""
    from hle_core.bags.scoring import json_safe as _json_safe

    json_path, md_path = Path(json_path), Path(md_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_json_safe({
        **(meta or {}), "objective": "eligible (AQ >= min_aq), fewest ID switches, higher AQ, higher STQ",
        "min_aq": result.min_aq, "best": result.best_row, "skipped": result.skipped,
        "candidates": result.rows}), indent=2) + "\n")
    md_path.write_text(candidates_markdown(result))
