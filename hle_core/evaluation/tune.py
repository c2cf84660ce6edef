"""Search of the panoptic decoder's thresholds on a validation split (paper §4.2: "the thresholds of the
decoding are tuned with Optuna").

The network runs once (:func:`.predict.infer_outputs`, outputs cached in memory); each Optuna trial only decodes
and scores (:func:`.predict.decode_and_score`), maximising PQ. Trial 0 is the starting configuration itself
(enqueued), so the best configuration found is never worse than it on the split searched. Given a seed the
search is deterministic (TPE sampler seeded, decoding deterministic on CPU).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import ConfigError, DecoderConfig, HLEConfig
from .predict import CachedOutputs, decode_and_score

__all__ = ["SEARCH_SPACE", "TuneResult", "parse_space", "tune_decoder", "write_decoder_yaml", "write_trials"]

#: Searched thresholds of :class:`hle_core.config.DecoderConfig`: name -> (low, high), both inclusive; the type
#: (float or int) is that of the field. A range is widened to contain the starting value (enqueued as trial 0).
SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "seed_threshold": (0.05, 0.95),
    "merge_threshold": (0.05, 0.95),
    "mask_threshold": (0.05, 0.95),
    "stuff_threshold": (0.0, 0.9),
    "min_instance_area": (0, 1024),     # pixels at output resolution
    "min_stuff_area": (0, 4096),
}

#: Summary columns of every trial, taken from the results dict of :meth:`hle_core.evaluation.PQStats.results`.
_METRICS = {
    "pq": lambda r: r["All"]["pq"], "pq_things": lambda r: r["Things"]["pq"], "pq_stuff": lambda r: r["Stuff"]["pq"],
    "sq": lambda r: r["All"]["sq"], "rq": lambda r: r["All"]["rq"],
    "pq_dagger": lambda r: r["pq_dagger"]["All"]["pq_dagger"], "pc": lambda r: r["pc"]["All"]["pc"],
    "miou": lambda r: r["miou"]["miou"],
}


@dataclass
class TuneResult:
    """Outcome of :func:`tune_decoder`: the starting and the best decoder configuration, their full results
    dicts (panopticapi keys plus PQ†, PC, mIoU) and one row per trial (``trial``, the parameters, the metrics of
    :data:`_METRICS`, ``seconds``)."""

    baseline: DecoderConfig
    best: DecoderConfig
    baseline_results: dict[str, Any]
    best_results: dict[str, Any]
    best_trial: int
    trials: list[dict[str, Any]]
    space: dict[str, tuple[float, float]]


def parse_space(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["min_stuff_area=0:2048", ...]`` -> :data:`SEARCH_SPACE` with those ranges replaced."""
    space = dict(SEARCH_SPACE)
    for item in items:
        name, sep, rng = item.partition("=")
        low, colon, high = rng.partition(":")
        if not sep or not colon or name.strip() not in SEARCH_SPACE:
            raise ConfigError(f"--space expects NAME=LOW:HIGH with NAME one of {sorted(SEARCH_SPACE)}, got {item!r}")
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise ConfigError(f"--space {item!r}: LOW and HIGH must be numbers") from None
        if not lo <= hi:
            raise ConfigError(f"--space {item!r}: LOW must be <= HIGH")
        space[name.strip()] = (lo, hi)
    return space


def _bounds(space: Mapping[str, tuple[float, float]], base: DecoderConfig) -> dict[str, tuple[type, Any, Any]]:
    """name -> (type, low, high) with the range widened to hold the starting value and checked for validity."""
    out = {}
    for name, (lo, hi) in space.items():
        kind = type(getattr(base, name))
        start = getattr(base, name)
        lo, hi = min(kind(lo), start), max(kind(hi), start)
        if name.endswith("_threshold") and not (0.0 <= lo <= hi <= 1.0):
            raise ConfigError(f"search range of decoder.{name} must lie in [0, 1], got [{lo}, {hi}]")
        if name.endswith("_area") and lo < 0:
            raise ConfigError(f"search range of decoder.{name} must be >= 0, got [{lo}, {hi}]")
        out[name] = (kind, lo, hi)
    return out


def tune_decoder(cached: Sequence[CachedOutputs], decode_params: Mapping[str, torch.Tensor], cfg: HLEConfig, *,
                 trials: int, seed: int = 0, space: Mapping[str, tuple[float, float]] | None = None,
                 progress: bool = False) -> TuneResult:
    """Optuna TPE search of the decoder thresholds maximising PQ (All) of ``cached`` against its ground truth.

    Args:
        cached: network outputs of the validation images (:func:`.predict.infer_outputs`, kept in a list).
        decode_params: ``class_means`` (K, D) / ``class_sigma`` (K,) of the network (``decode_params()``).
        cfg: the network's config; ``cfg.decoder`` is the starting point, enqueued as trial 0, and supplies
            the fields that are not searched (``nms_kernel``, ``max_seeds``, ``fast_downsample``).
        trials: number of trials including trial 0 (>= 1).
        seed: seed of the TPE sampler.
        space: name -> (low, high) ranges (default :data:`SEARCH_SPACE`).
    Returns:
        :class:`TuneResult`; ``best`` is the first trial with the highest PQ (trial 0 unless one beats it).
    """
    import optuna

    if trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    if not cached:
        raise ValueError("no cached network outputs to tune on (empty validation split)")
    base = cfg.decoder
    bounds = _bounds(SEARCH_SPACE if space is None else space, base)
    results: dict[int, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def objective(trial: "optuna.Trial") -> float:
        values = {name: (trial.suggest_int(name, int(lo), int(hi)) if kind is int
                         else trial.suggest_float(name, float(lo), float(hi)))
                  for name, (kind, lo, hi) in bounds.items()}
        decoder = dataclasses.replace(base, **values)
        t0 = time.perf_counter()
        res = decode_and_score(cached, decode_params, cfg, decoder).results()
        results[trial.number] = res
        rows.append({"trial": trial.number, **values, **{k: f(res) for k, f in _METRICS.items()},
                     "seconds": round(time.perf_counter() - t0, 4)})
        return res["All"]["pq"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({name: getattr(base, name) for name in bounds})          # trial 0: the starting point
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trials, desc="tune-decoder", unit="trial", dynamic_ncols=True)

    def report(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(pq=f"{trial.value:.4f}", best=f"{max(r['pq'] for r in rows):.4f}")

    try:
        study.optimize(objective, n_trials=trials, callbacks=[report])
    finally:
        if bar is not None:
            bar.close()
    best_row = max(rows, key=lambda r: (r["pq"], -r["trial"]))                  # first trial of the maximum
    best = dataclasses.replace(base, **{name: best_row[name] for name in bounds})
    return TuneResult(baseline=base, best=best, baseline_results=results[0],
                      best_results=results[best_row["trial"]], best_trial=best_row["trial"], trials=rows,
                      space={k: (lo, hi) for k, (_, lo, hi) in bounds.items()})


def write_decoder_yaml(path: str | Path, decoder: DecoderConfig, comment: Sequence[str] = ()) -> Path:
    """Write ``decoder`` as an ``hle: decoder:`` section (every field, so the file alone fixes the decoder),
    loadable with :func:`hle_core.config.load_config` and includable in a recipe; ``comment`` lines go on top."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "".join(f"# {line}\n" for line in comment)
    path.write_text(head + yaml.safe_dump({"hle": {"decoder": dataclasses.asdict(decoder)}}, sort_keys=False))
    return path


def write_trials(result: TuneResult, csv_path: str | Path, json_path: str | Path,
                 meta: Mapping[str, Any] | None = None) -> None:
    """The trial table as CSV (one row per trial) and as JSON (with the baseline, the best and ``meta``)."""
    import csv
    import json

    csv_path, json_path = Path(csv_path), Path(json_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.trials[0]))
        writer.writeheader()
        writer.writerows(result.trials)
    summary = lambda r: {k: fn(r) for k, fn in _METRICS.items()}  # noqa: E731
    json_path.write_text(json.dumps({
        **(meta or {}),
        "space": {k: list(v) for k, v in result.space.items()},
        "baseline": {"decoder": dataclasses.asdict(result.baseline), **summary(result.baseline_results)},
        "best": {"trial": result.best_trial, "decoder": dataclasses.asdict(result.best),
                 **summary(result.best_results)},
        "trials": result.trials}, indent=2) + "\n")
