"""Training loop (paper §4.2): Adam, polynomial decay, the hierarchical loss of eq. 16.

Reads top to bottom: :func:`build_optimizer`, :func:`poly_lr`, :func:`train_one_epoch`, :func:`train`.
Checkpoints (atomic, every ``ckpt_every`` steps) carry model, optimizer, scheduler, step and the data order
position; the global RNG (dropout in torchvision's ASPP) is reseeded from (seed, rank, step) before every
step, so no RNG state needs saving and ``--resume`` continues exactly. Multi-GPU / multi-process through ``torchrun``
(DistributedDataParallel; gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from ..config import MODEL_SETTINGS_OUTSIDE_NETWORK, HLEConfig, resolve_device
from ..losses import HierarchicalLovaszLoss
from ..model import CheckpointError, HLENet, build_model, load_checkpoint, save_checkpoint
from ..model.checkpoint import remove_partial_checkpoints
from .config import TrainConfig, validate_train_config
from .data import build_train_dataset, build_val_dataset
from .sampler import EpochSampler

__all__ = ["build_optimizer", "poly_lr", "train_one_epoch", "train", "validate", "TrainState"]

log = logging.getLogger("hle.train")


# --- optimiser and schedule ------------------------------------------------------------------
def build_optimizer(model: HLENet, tcfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (§4.2). The class-level parameters μ̂_k, σ_k get their own lr multiplier (eq. 15 discussion)."""
    class_params = [model.class_means, model.log_class_sigma]
    ids = {id(p) for p in class_params}
    net_params = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    return torch.optim.Adam([
        {"params": net_params, "lr": tcfg.lr},
        {"params": class_params, "lr": tcfg.lr * tcfg.class_param_lr_mult},
    ], lr=tcfg.lr, weight_decay=tcfg.weight_decay)


def poly_lr(step: int, tcfg: TrainConfig) -> float:
    """Polynomial decay factor ``(1 - step/steps)^power`` after an optional linear warm-up."""
    if tcfg.warmup_steps and step < tcfg.warmup_steps:
        return (step + 1) / tcfg.warmup_steps
    return max(0.0, 1.0 - step / tcfg.steps) ** tcfg.poly_power


class TrainState:
    """Mutable bookkeeping that is checkpointed with the weights."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0

    def to_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}


# --- distributed helpers ---------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: torch.device) -> None:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the global torch RNG for optimisation step ``step`` of ``rank`` (a function of these alone)."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + 17) % (2**63 - 1)


# --- the loop --------------------------------------------------------------------------------
def train_one_epoch(model: torch.nn.Module, criterion: HierarchicalLovaszLoss, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    scaler: torch.amp.GradScaler, state: TrainState, tcfg: TrainConfig, device: torch.device,
                    on_step: Callable[[TrainState, dict[str, float], dict[str, torch.Tensor], dict], None]) -> bool:
    """One pass over ``loader`` (resuming mid-epoch where ``state.batch_in_epoch`` says). Returns True when
    ``tcfg.steps`` is reached."""
    net = model.module if hasattr(model, "module") else model
    model.train()
    use_amp = tcfg.amp and device.type == "cuda"
    rank = _dist_info()[0]
    for batch in loader:
        torch.manual_seed(step_seed(tcfg.seed, rank, state.step))   # dropout masks: the same after --resume
        images = batch["image"].to(device, non_blocking=True)
        if tcfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        semantic = batch["semantic"].to(device, non_blocking=True)
        instance = batch["instance"].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            outputs = model(images)
        # the loss runs in float32: Lovász sorting and exponentials of eq. 7-9 are precision sensitive
        outputs = {k: v.float() for k, v in outputs.items()}
        full_outputs, stride = outputs, tcfg.loss_stride
        if stride > 1:   # the loss on a strided subsample of the pixels: cost / stride², same ρ units (eq. 8)
            o = stride // 2
            outputs = {k: v[..., o::stride, o::stride] for k, v in outputs.items()}
            semantic, instance = semantic[..., o::stride, o::stride], instance[..., o::stride, o::stride]
        terms = criterion(outputs, net.class_means.float(), net.class_sigma.float(), semantic, instance,
                          input_stride=stride)
        loss = terms["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {state.step}: "
                                     f"{ {k: float(v.detach()) for k, v in terms.items()} }")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tcfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        state.step += 1
        state.batch_in_epoch += 1
        on_step(state, {k: float(v.detach()) for k, v in terms.items()}, full_outputs, batch)
        if state.step >= tcfg.steps or 0 < tcfg.stop_at <= state.step:
            return True
    state.epoch += 1
    state.batch_in_epoch = 0
    return False


def train(cfg: HLEConfig, tcfg: TrainConfig, resume: str | Path | None = None,
          progress: bool = True, callback: Callable[[TrainState, dict[str, float]], None] | None = None) -> Path:
    """Train from scratch (or resume) and return the path of the final checkpoint."""
    validate_train_config(tcfg)             # every value checked before anything starts (ConfigError lists all)
    device = resolve_device(tcfg.device, local_rank=int(os.environ.get("LOCAL_RANK", 0)))   # one GPU per process
    _init_distributed(device)
    rank, world = _dist_info()
    out_dir = Path(tcfg.out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in remove_partial_checkpoints(out_dir):      # left by a save that was killed half-way
            log.info("removed %s, the partial checkpoint of an interrupted save", stale)
    seed_everything(tcfg.seed + rank)

    model = build_model(cfg).to(device)
    if tcfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = HierarchicalLovaszLoss(cfg).to(device)
    optimizer = build_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_lr(s, tcfg))
    scaler = torch.amp.GradScaler(device.type, enabled=tcfg.amp and device.type == "cuda")
    state = TrainState()

    if tcfg.init_weights and not resume:
        payload = load_checkpoint(tcfg.init_weights, map_location=device)
        _check_same_network(payload, cfg, tcfg.init_weights, "start from it")
        model.load_state_dict(payload["model"])          # float16 release weights are copied into float32
        log.info("weights from %s (its step %s); optimizer and lr schedule start afresh", tcfg.init_weights,
                 payload["extra"].get("step"))
    if resume:
        payload = load_checkpoint(resume, map_location=device)
        _check_resumable(payload, cfg, resume)
        model.load_state_dict(payload["model"])
        if payload.get("optimizer"):
            optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scheduler"):
            scheduler.load_state_dict(payload["scheduler"])
        extra = payload["extra"]
        state.step, state.epoch, state.batch_in_epoch = extra["step"], extra["epoch"], extra["batch_in_epoch"]
        log.info("resumed %s at step %d (epoch %d, batch %d)", resume, state.step, state.epoch, state.batch_in_epoch)

    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    dataset: Dataset = build_train_dataset(cfg, tcfg, progress=progress and rank == 0)
    sampler = EpochSampler(len(dataset), seed=tcfg.seed, rank=rank, world_size=world)
    writer = _summary_writer(out_dir, tcfg) if rank == 0 else None
    bar = _progress(tcfg.steps, state.step, progress and rank == 0)

    def save(tag: str) -> Path:
        return save_checkpoint(out_dir / tag, model, optimizer=optimizer, scheduler=scheduler, step=state.step,
                               extra=state.to_dict() | {"train": _jsonable(tcfg)})

    def on_step(st: TrainState, terms: dict[str, float], outputs: dict[str, torch.Tensor], batch: dict) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total']:.3f}", refresh=False)
        elif rank == 0 and st.step % tcfg.log_every == 0:
            log.info("step %d/%d loss %.4f (%s)", st.step, tcfg.steps, terms["total"],
                     ", ".join(f"{k} {terms[k]:.3f}" for k in ("seg", "ins", "seed", "ins_var") if k in terms))
        if writer is not None and (st.step % tcfg.log_every == 0 or st.step == 1):
            for k, v in terms.items():
                writer.add_scalar(f"loss/{k}", v, st.step)
            writer.add_scalar("lr", scheduler.get_last_lr()[0], st.step)
            writer.add_scalar("sigma/class_mean", float(model.class_sigma.detach().mean()), st.step)
        if writer is not None and tcfg.image_every and st.step % tcfg.image_every == 0:
            _log_images(writer, cfg, model, outputs, batch, st.step)
        if callback is not None and rank == 0:
            callback(st, terms)
        if rank == 0 and tcfg.ckpt_every and st.step % tcfg.ckpt_every == 0:
            save("last.pt")

    def run_validation() -> None:
        metrics = validate(model, cfg, tcfg, device, progress=progress)
        if writer is not None:
            for split in ("All", "Things", "Stuff"):
                writer.add_scalar(f"val/pq_{split.lower()}", metrics[split]["pq"], state.step)
            writer.add_scalar("val/miou", metrics["miou"]["miou"], state.step)
        payload = {"step": state.step, "results": metrics}
        (out_dir / "val_metrics.json").write_text(json.dumps(payload, indent=2, default=str))
        with open(out_dir / "val_history.jsonl", "a") as f:      # the learning curve, one line per validation
            f.write(json.dumps({"step": state.step, "pq": metrics["All"]["pq"], "pq_th": metrics["Things"]["pq"],
                                "pq_st": metrics["Stuff"]["pq"], "miou": metrics["miou"]["miou"]}) + "\n")
        log.info("step %d: validation PQ %.4f (things %.4f, stuff %.4f)", state.step, metrics["All"]["pq"],
                 metrics["Things"]["pq"], metrics["Stuff"]["pq"])

    user_callback = callback

    def callback_with_val(st: TrainState, terms: dict[str, float]) -> None:
        if user_callback is not None:
            user_callback(st, terms)
        if tcfg.val_every and st.step % tcfg.val_every == 0 and st.step < tcfg.steps:
            run_validation()
            model.train()

    callback = callback_with_val if rank == 0 else user_callback

    done = 0 < tcfg.stop_at <= state.step
    try:
        while not done:
            sampler.set_position(state.epoch, state.batch_in_epoch * tcfg.batch_size)
            loader = DataLoader(dataset, batch_size=tcfg.batch_size, sampler=sampler, num_workers=tcfg.num_workers,
                                drop_last=True, persistent_workers=False, pin_memory=device.type == "cuda")
            if len(loader) == 0 and state.batch_in_epoch > 0:
                # resumed from a checkpoint written on an epoch's last batch: the next epoch starts afresh
                state.epoch += 1
                state.batch_in_epoch = 0
                continue
            if len(loader) == 0:
                raise ValueError(f"dataset of {len(dataset)} images is smaller than one batch ({tcfg.batch_size})")
            done = train_one_epoch(ddp_model, criterion, loader, optimizer, scheduler, scaler, state, tcfg,
                                   device, on_step)
        if bar is not None:
            bar.close()
            bar = None
        final = out_dir / "final.pt"
        if state.step < tcfg.steps:          # train.stop_at: a chunk of a longer run, continued by --resume
            final = out_dir / "last.pt"
            if rank == 0:
                save("last.pt")
                log.info("stopped at step %d of %d (train.stop_at); continue with --resume %s", state.step,
                         tcfg.steps, final)
        elif rank == 0:
            save("last.pt")
            save("final.pt")
            if tcfg.data.num_val > 0:
                run_validation()
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def _check_same_network(payload: dict[str, Any], cfg: HLEConfig, path: str | Path, use: str) -> None:
    """The checkpoint's network (hle.model, hle.classes) must be the recipe's."""
    import dataclasses

    ours, theirs = cfg.model, payload["config"].model
    diff = [f.name for f in dataclasses.fields(ours)
            if f.name not in MODEL_SETTINGS_OUTSIDE_NETWORK and getattr(ours, f.name) != getattr(theirs, f.name)]
    if payload["config"].classes != cfg.classes:
        diff.append("classes")
    if diff:
        raise CheckpointError(f"{path}: trained with a different network than the recipe (hle.model / hle.classes "
                              f"differ in {diff}); {use} with the recipe that wrote it")


def _check_resumable(payload: dict[str, Any], cfg: HLEConfig, path: str | Path) -> None:
    """A ``--resume`` checkpoint must be a training checkpoint of the same network as the recipe."""
    _check_same_network(payload, cfg, path, "resume")
    missing = [k for k in ("step", "epoch", "batch_in_epoch") if k not in payload["extra"]]
    if missing or not payload.get("optimizer") or not payload.get("scheduler"):
        raise CheckpointError(f"{path}: not a training checkpoint (no optimizer / scheduler state or data position "
                              f"{missing}); --resume needs last.pt or final.pt written by `hle train`")


def validate(model: torch.nn.Module, cfg: HLEConfig, tcfg: TrainConfig, device: torch.device,
             progress: bool = False) -> dict[str, Any]:
    """PQ of ``model`` on the recipe's validation split (whole images through the pipeline's infer and decode
    stages, :mod:`hle_core.evaluation.predict`; §3.5 decoding with ``cfg.decoder`` on ``device``), plus the learned
    variances the paper compares (§4.4): the semantic σ_k (eq. 9) against the mean predicted
    instance σ_i over ground-truth thing pixels (eq. 7)."""
    from ..config import LABEL_DIVISOR
    from ..evaluation.predict import decode_and_score, infer_outputs

    net = model.module if hasattr(model, "module") else model
    params = {k: v.cpu() for k, v in net.decode_params().items()}
    thing_ids = torch.tensor([c.id for c in cfg.classes.classes if c.isthing])
    sums = {"sigma": 0.0, "sigma_spatial": 0.0, "pixels": 0}

    def thing_sigmas(c, _result) -> None:     # σ_i and σ_spatial,i over the ground-truth thing pixels
        gt = torch.from_numpy(c.gt_panoptic).long()
        things = ((gt >= LABEL_DIVISOR) & torch.isin(gt // LABEL_DIVISOR, thing_ids)).to(c.maps["sigma"].device)
        sums["sigma"] += float(c.maps["sigma"][0][things].sum())
        sums["sigma_spatial"] += float(c.maps["sigma_spatial"][0][things].sum())
        sums["pixels"] += int(things.sum())

    outputs = infer_outputs(net, cfg, build_val_dataset(cfg, tcfg), device=device, progress=progress)
    results = decode_and_score(outputs, params, cfg, on_result=thing_sigmas).results()
    n_px = sums["pixels"]
    results["variances"] = {
        "semantic_sigma_mean": float(params["class_sigma"].mean()),
        "semantic_sigma": {c.name: float(v) for c, v in zip(cfg.classes.classes, params["class_sigma"])},
        "instance_sigma_mean": sums["sigma"] / max(n_px, 1),
        "instance_sigma_spatial_mean": sums["sigma_spatial"] / max(n_px, 1),
        "thing_pixels": n_px,
    }
    return results


# --- logging helpers -------------------------------------------------------------------------
def _jsonable(tcfg: TrainConfig) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(tcfg), default=str))


def _summary_writer(out_dir: Path, tcfg: TrainConfig):
    if not tcfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: scalars go to the progress bar only
        log.warning("tensorboard not installed; no TensorBoard logs")
        return None
    return SummaryWriter(str(out_dir / "tb"))


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


@torch.no_grad()
def _log_images(writer, cfg: HLEConfig, model: HLENet, outputs: dict[str, torch.Tensor], batch: dict,
                step: int) -> None:
    """Overlay of the decoded prediction and the embedding PCA as RGB (paper Fig. 3) for the first image."""
    from ..decoding import decode_batch
    from ..visualize import embedding_to_rgb, overlay

    m = cfg.model
    img = batch["image"][0].cpu() * torch.tensor(m.std).view(3, 1, 1) + torch.tensor(m.mean).view(3, 1, 1)
    img = (img.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
    first = {k: v[:1].detach() for k, v in outputs.items()}
    res = decode_batch(first, model.decode_params(), cfg.classes, cfg.decoder, m.coord_scale,
                       split_embedding=cfg.loss.split_embedding)[0]
    writer.add_image("pred/overlay", overlay(img, res.panoptic.cpu().numpy(), cfg.classes), step, dataformats="HWC")
    writer.add_image("pred/embedding_pca", embedding_to_rgb(outputs["embedding"][0].detach().cpu()), step,
                     dataformats="HWC")
    writer.add_image("pred/seed", outputs["seed"][0].detach().cpu(), step)
