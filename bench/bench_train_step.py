"""Training throughput on this machine: steps/s of the real training loop, before and after each speed-up.

Every setting runs :func:`hle_core.training.trainer.train_one_epoch` (the loop ``hle train`` runs: data loading
with the recipe's augmentations, forward, the hierarchical loss, backward, Adam) for ``--steps`` timed steps
after ``--warmup`` untimed ones, from the same initial weights and on the same scenes. The settings differ only
in what is not learning:

* ``baseline``: scenes rendered on the fly at every use, NCHW (contiguous) tensors;
* ``cache``: scenes read from the pre-rendered scene cache (``train.data.cache_dir``);
* ``cache+channels_last``: and NHWC weights / inputs (``train.channels_last``, the default now).

Settings are interleaved ``--rounds`` times so that a change of machine load hits all of them alike; the median
step time over all rounds is reported. A one-step profile per stage (data, forward, loss, backward, optimiser)
is printed for the first and the last setting. Example::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_train_step.py --config config/synthetic_street.yaml
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from hle_core.losses import HierarchicalLovaszLoss
from hle_core.model import build_model
from hle_core.training.config import load_recipe
from hle_core.training.data import build_train_dataset
from hle_core.training.sampler import EpochSampler
from hle_core.training.trainer import TrainState, build_optimizer, poly_lr, train_one_epoch

SETTINGS = {"baseline": (False, False), "cache": (True, False), "cache+channels_last": (True, True)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/synthetic_street.yaml", help="training recipe")
    p.add_argument("--steps", type=int, default=8, help="timed steps per setting and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per setting and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the settings")
    p.add_argument("--scenes", type=int, default=64, help="scenes in the training set (cache size)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def run_setting(cfg, tcfg, cache_dir: str | None, channels_last: bool, steps: int, warmup: int,
                init_state: dict) -> list[float]:
    """Step times (s) of ``steps`` timed steps of the real loop with these settings."""
    tcfg.data.cache_dir, tcfg.channels_last = cache_dir, channels_last
    tcfg.steps = warmup + steps
    model = build_model(cfg)
    model.load_state_dict(init_state)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = HierarchicalLovaszLoss(cfg)
    optimizer = build_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_lr(s, tcfg))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    dataset = build_train_dataset(cfg, tcfg)
    loader = torch.utils.data.DataLoader(dataset, batch_size=tcfg.batch_size, sampler=EpochSampler(len(dataset)),
                                         num_workers=0, drop_last=True)
    stamps: list[float] = []
    state = TrainState()
    t0 = time.perf_counter()
    train_one_epoch(model, criterion, loader, optimizer, scheduler, scaler, state, tcfg, torch.device("cpu"),
                    lambda st, terms, outputs, batch: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    return times[warmup:]


def profile_step(cfg, tcfg, cache_dir: str | None, channels_last: bool, init_state: dict) -> dict[str, float]:
    """Milliseconds of each stage of one step (data for one batch, forward, loss, backward, optimiser)."""
    tcfg.data.cache_dir, tcfg.channels_last = cache_dir, channels_last
    model = build_model(cfg)
    model.load_state_dict(init_state)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    criterion, optimizer = HierarchicalLovaszLoss(cfg), build_optimizer(model, tcfg)
    dataset = build_train_dataset(cfg, tcfg)
    out: dict[str, float] = {}
    for rep in range(2):                       # second repetition is reported (first warms the allocator)
        t = [time.perf_counter()]
        batch = torch.utils.data.default_collate([dataset[(i, i)] for i in range(tcfg.batch_size)])
        images = batch["image"]
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        t.append(time.perf_counter())
        outputs = {k: v.float() for k, v in model(images).items()}
        t.append(time.perf_counter())
        s, o = tcfg.loss_stride, tcfg.loss_stride // 2
        terms = criterion({k: v[..., o::s, o::s] for k, v in outputs.items()}, model.class_means,
                          model.class_sigma, batch["semantic"][..., o::s, o::s], batch["instance"][..., o::s, o::s],
                          input_stride=s)
        t.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip or 1e9)
        optimizer.step()
        t.append(time.perf_counter())
        out = {k: 1e3 * (b - a) for k, a, b in zip(("data", "forward", "loss", "backward", "optimiser"), t, t[1:])}
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from hle_core.allocator import keep_freed_memory

    print(f"memory allocator: {keep_freed_memory()}")   # as hle and the node do; HLE_KEEP_FREED_MEMORY=0: off
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, tcfg = load_recipe(args.config, {"train": {"data": {"num_train": args.scenes}}})
    torch.manual_seed(0)
    init_state = build_model(cfg).state_dict()
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    profiles: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        build_train_dataset(cfg, load_recipe(args.config, {"train": {"data": {"num_train": args.scenes,
                                                                             "cache_dir": cache_dir}}})[1])
        cache_s = time.perf_counter() - t0
        print(f"scene cache: {args.scenes} scenes rendered in {cache_s:.1f} s (once per recipe and seed)")
        for name in ("baseline", "cache+channels_last"):
            use_cache, cl = SETTINGS[name]
            profiles[name] = profile_step(cfg, tcfg, cache_dir if use_cache else None, cl, init_state)
        for r in range(args.rounds):
            for name, (use_cache, cl) in SETTINGS.items():
                times[name] += run_setting(cfg, tcfg, cache_dir if use_cache else None, cl, args.steps, args.warmup,
                                           init_state)
                print(f"round {r + 1}/{args.rounds} {name:22s} median {statistics.median(times[name]):.3f} s/step",
                      flush=True)
    base = statistics.median(times["baseline"])
    rows = {k: {"s_per_step": statistics.median(v), "steps_per_s": 1.0 / statistics.median(v),
                "speedup": base / statistics.median(v), "n": len(v)} for k, v in times.items()}
    print(f"\nrecipe {args.config}: batch {tcfg.batch_size} x crop {tuple(tcfg.crop_size)}, "
          f"scenes {tuple(tcfg.data.image_size)}, loss_stride {tcfg.loss_stride}, threads {torch.get_num_threads()}")
    print(f"{'setting':24s} {'s/step':>8s} {'steps/s':>8s} {'speed-up':>9s}")
    for k, v in rows.items():
        print(f"{k:24s} {v['s_per_step']:8.3f} {v['steps_per_s']:8.3f} {v['speedup']:8.2f}x")
    print("\none step by stage (ms):")
    for k, prof in profiles.items():
        print(f"  {k:22s} " + "  ".join(f"{s} {ms:.0f}" for s, ms in prof.items()))
    result = {"config": args.config, "threads": torch.get_num_threads(), "scene_cache_s": cache_s,
              "settings": rows, "profile_ms": profiles}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
