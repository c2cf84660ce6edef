"""Learning curve of a training run: validation PQ / PQ_th / PQ_st against steps, with the training loss.

Reads ``<run>/val_history.jsonl`` (one line per validation, written by ``hle train``) and, when TensorBoard is
installed, the ``loss/total`` scalars of ``<run>/tb``. Extra points (e.g. the released model evaluated on fresh
scenes) can be added with ``--point STEP:PQ:PQ_TH:LABEL`` (percent). Example::

    python scripts/plot_learning_curve.py runs/street --out docs/results/learning_curve.png
    python scripts/plot_learning_curve.py runs/street4k runs/street6k --out docs/results/learning_curve_street.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_history(run: Path) -> list[dict]:
    path = run if run.suffix == ".jsonl" else run / "val_history.jsonl"      # a run folder or a kept copy
    if not path.is_file():
        raise SystemExit(f"{path}: not found (hle train writes it at every validation)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows}            # a resumed run may validate a step twice: keep the last
    return [by_step[s] for s in sorted(by_step)]


def read_losses(run: Path) -> tuple[list[int], list[float]]:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return [], []
    steps: dict[int, float] = {}
    for events in sorted((run / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "loss/total" in acc.Tags().get("scalars", []):
            steps.update({e.step: e.value for e in acc.Scalars("loss/total")})
    keys = sorted(steps)
    return keys, [steps[k] for k in keys]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, nargs="+",
                   help="run folder(s) of hle train (out_dir) or kept copies of their val_history.jsonl; several: "
                        "the stages of one training, merged by step (a later one wins where two validated a step)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default=None)
    p.add_argument("--point", action="append", default=[], metavar="STEP:PQ:PQ_TH:LABEL",
                   help="an extra evaluation to mark, in percent (repeatable)")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merged = {r["step"]: r for run in args.run for r in read_history(run)}
    hist = [merged[k] for k in sorted(merged)]
    steps = [r["step"] for r in hist]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("pq", "PQ"), ("pq_th", "PQ_th (things)"), ("pq_st", "PQ_st (stuff)")):
        ax.plot(steps, [100 * r[key] for r in hist], marker="o", label=label)
    for spec in args.point:
        step, pq, pq_th, label = spec.split(":", 3)
        ax.scatter([int(step)] * 2, [float(pq), float(pq_th)], marker="*", s=120, zorder=5)
        ax.annotate(label, (int(step), float(pq)), textcoords="offset points", xytext=(-10, 8), ha="right")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PQ (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    loss_by_step = {k: v for run in args.run for k, v in zip(*read_losses(run))}
    loss_steps = sorted(loss_by_step)
    losses = [loss_by_step[k] for k in loss_steps]
    if losses:
        ax2 = ax.twinx()
        ax2.plot(loss_steps, losses, color="grey", alpha=0.4, lw=1, label="training loss")
        ax2.set_ylabel("training loss (eq. 16)")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
        ax.legend(lines, labels, loc="center right", fontsize=8)
    else:
        ax.legend(loc="lower right")
    ax.set_title(args.title or f"learning curve: {', '.join(str(r) for r in args.run)}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
