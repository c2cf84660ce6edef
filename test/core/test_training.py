"""Training (paper §4.2) end to end on a tiny network: exact ``--resume``, DDP on CPU (gloo, 2 processes with the
environment ``torchrun`` gives its workers), the recipes in config/, checkpoints, the ``hle train`` command and a
learning smoke test.

Tiny model (MobileNetV2, ASPP 32, decoder 16, embedding 4) on 64x128 synthetic street scenes, 1 CPU thread.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from hle_core.cli import main as hle_main
from hle_core.config import HLEConfig
from hle_core.model import CheckpointError, build_model, load_model, save_checkpoint
from hle_core.training import load_recipe, train
from hle_core.training.trainer import TrainState, build_optimizer, poly_lr, train_one_epoch

ROOT = Path(__file__).resolve().parents[2]

TINY_HLE = {"model": {"backbone": "mobilenet_v2", "aspp_channels": 32, "decoder_channels": 16, "embedding_dim": 4}}


def tiny_train(out_dir: Path | str, **values) -> dict:
    """``train`` section of a tiny synthetic recipe (``values`` override; ``data`` merges key by key)."""
    data = {"format": "synthetic", "num_train": 6, "num_val": 2, "image_size": [64, 128], **values.pop("data", {})}
    return {"data": data, "steps": 4, "batch_size": 2, "lr": 1.0e-3, "crop_size": [64, 128], "device": "cpu",
            "tensorboard": False, "ckpt_every": 2, "out_dir": str(out_dir), **values}


def tiny(out_dir: Path | str, **values):
    return load_recipe(None, {"hle": TINY_HLE, "train": tiny_train(out_dir, **values)})


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    """Bitwise equality of two nested state dicts (model, optimizer, scheduler)."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


# ---- (a) --resume continues exactly ------------------------------------------------------------------------
class Interrupted(Exception):
    """Stands for a crash (power cut, pre-emption) between two checkpoints."""


@pytest.mark.slow  # ~25 s on the 2-core machine
def test_resume_continues_exactly(tmp_path):
    """4 steps straight == the same run killed after step 3 (last checkpoint: step 2) and resumed to 4.

    6 images in batches of 2: the checkpoint falls mid-epoch and the resumed run crosses an epoch boundary.
    torchvision's ASPP has dropout, so this also checks that the global RNG does not depend on the history.
    """
    cfg, tcfg = tiny(tmp_path / "straight", data={"num_val": 0})
    straight = load_raw(train(cfg, tcfg, progress=False))

    def crash_at_step_3(state: TrainState, terms: dict) -> None:
        if state.step == 3:
            raise Interrupted

    cfg, tcfg = tiny(tmp_path / "resumed", data={"num_val": 0})
    with pytest.raises(Interrupted):
        train(cfg, tcfg, progress=False, callback=crash_at_step_3)
    checkpoint = tmp_path / "resumed" / "last.pt"
    assert load_raw(checkpoint)["step"] == 2
    resumed = load_raw(train(cfg, tcfg, resume=checkpoint, progress=False))

    assert straight["step"] == resumed["step"] == 4
    assert_same_state(straight["model"], resumed["model"])
    assert_same_state(straight["optimizer"], resumed["optimizer"])
    assert_same_state(straight["scheduler"], resumed["scheduler"])
    extra_a, extra_b = json.loads(straight["extra"]), json.loads(resumed["extra"])
    assert {k: extra_a[k] for k in ("step", "epoch", "batch_in_epoch")} == \
        {k: extra_b[k] for k in ("step", "epoch", "batch_in_epoch")} == {"step": 4, "epoch": 1, "batch_in_epoch": 1}


def test_resume_from_a_run_that_ended_on_an_epoch_boundary_extends_it(tmp_path):
    """A finished run whose last step closed an epoch (6 images, batches of 2, 3 steps) continues with more steps.

    The checkpoint says epoch 0, batch 3 of 3: the resumed run must start epoch 1, not stop with an error about an
    empty loader (what `--resume last.pt --set train.steps=N` met on the default model's run).
    """
    cfg, tcfg = tiny(tmp_path / "run", steps=3, data={"num_val": 0})
    first = load_raw(train(cfg, tcfg, progress=False))
    assert json.loads(first["extra"])["batch_in_epoch"] == 3
    cfg, tcfg = tiny(tmp_path / "run", steps=5, data={"num_val": 0})
    longer = load_raw(train(cfg, tcfg, resume=tmp_path / "run" / "last.pt", progress=False))
    assert {k: json.loads(longer["extra"])[k] for k in ("step", "epoch", "batch_in_epoch")} == \
        {"step": 5, "epoch": 1, "batch_in_epoch": 2}


@pytest.mark.slow  # ~30 s
def test_stop_at_runs_a_chunk_of_the_schedule_and_resume_continues_exactly(tmp_path):
    """train.stop_at=2 of a 4-step schedule writes last.pt at step 2 (no final.pt); --resume with stop_at=0
    continues to step 4 with the same weights as the straight run: the schedule is the one of `steps` throughout."""
    cfg, tcfg = tiny(tmp_path / "straight", data={"num_val": 0})
    straight = load_raw(train(cfg, tcfg, progress=False))
    cfg, tcfg = tiny(tmp_path / "chunks", stop_at=2, data={"num_val": 0})
    first = train(cfg, tcfg, progress=False)
    assert first.name == "last.pt" and load_raw(first)["step"] == 2
    assert not (tmp_path / "chunks" / "final.pt").exists()
    cfg, tcfg = tiny(tmp_path / "chunks", data={"num_val": 0})
    resumed = load_raw(train(cfg, tcfg, resume=first, progress=False))
    assert resumed["step"] == 4
    assert_same_state(straight["model"], resumed["model"])
    assert_same_state(straight["scheduler"], resumed["scheduler"])


@pytest.mark.slow  # ~20 s
def test_resume_refuses_a_checkpoint_of_another_network_or_without_optimizer(tmp_path):
    cfg, tcfg = tiny(tmp_path / "run", data={"num_val": 0})
    # a release's test resolution is not the network: it starts a run of the recipe like any release
    from hle_core.training import trainer

    trainer._check_same_network({"config": cfg.override({"model": {"test_scale": 1.5}})}, cfg, "scaled.pt", "start")
    other = cfg.override({"model": {"embedding_dim": 6}})
    save_checkpoint(tmp_path / "other.pt", build_model(other))
    with pytest.raises(CheckpointError, match=r"other\.pt: trained with a different network .*'embedding_dim'"):
        train(cfg, tcfg, resume=tmp_path / "other.pt", progress=False)
    save_checkpoint(tmp_path / "weights_only.pt", build_model(cfg))
    with pytest.raises(CheckpointError, match=r"weights_only\.pt: not a training checkpoint"):
        train(cfg, tcfg, resume=tmp_path / "weights_only.pt", progress=False)


def test_init_weights_starts_from_a_release_checkpoint_with_a_fresh_schedule(tmp_path, monkeypatch):
    """train.init_weights: the weights of a weights-only (release, float16) checkpoint start the run; the step
    counter, optimizer and lr schedule start afresh (a warm restart when no optimizer state is left). A checkpoint
    of another network is refused before any step."""
    cfg, _ = tiny(tmp_path / "unused")
    torch.manual_seed(123)
    start = build_model(cfg)
    save_checkpoint(tmp_path / "release.pt", start.half())      # float16, as `hle export checkpoint` writes
    seen: list[torch.Tensor] = []
    cfg, tcfg = tiny(tmp_path / "run", steps=1, init_weights=str(tmp_path / "release.pt"), data={"num_val": 0})
    import hle_core.training.trainer as T
    original = T.train_one_epoch

    def recording_epoch(model, *args, **kwargs):       # the weights the first step starts from
        seen.append(next(model.parameters()).detach().clone())
        return original(model, *args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", recording_epoch)
    out = load_raw(train(cfg, tcfg, progress=False))
    assert torch.equal(seen[0], next(start.parameters()).float())
    assert out["step"] == 1 and json.loads(out["extra"])["epoch"] == 0
    assert out["scheduler"]["last_epoch"] == 1          # the schedule of this run, from its step 0

    # a release's test resolution is not the network: it starts a run of the recipe like any release
    from hle_core.training import trainer

    trainer._check_same_network({"config": cfg.override({"model": {"test_scale": 1.5}})}, cfg, "scaled.pt", "start")
    other = cfg.override({"model": {"embedding_dim": 6}})
    save_checkpoint(tmp_path / "other.pt", build_model(other))
    cfg, tcfg = tiny(tmp_path / "run2", init_weights=str(tmp_path / "other.pt"), data={"num_val": 0})
    with pytest.raises(CheckpointError, match=r"other\.pt: trained with a different network .*start from it"):
        train(cfg, tcfg, progress=False)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "release.pt").read_bytes()[:1000])       # a truncated copy
    for bad, reason in (("missing.pt", "checkpoint not found"), ("cut.pt", "cannot read checkpoint")):
        cfg, tcfg = tiny(tmp_path / "run3", init_weights=str(tmp_path / bad), data={"num_val": 0})
        with pytest.raises(CheckpointError, match=reason):
            train(cfg, tcfg, progress=False)
        assert not (tmp_path / "run3" / "last.pt").exists()                           # refused before any step


# ---- (b) DDP on CPU: gloo, 2 processes, torchrun's env:// contract -------------------------------------------------
DDP_WORKER = textwrap.dedent('''
    """One torchrun rank: trains through hle_core.training.train and dumps its own final weights and what it saw."""
    import json, os, sys
    import torch
    import torch.distributed as dist
    import hle_core.training.trainer as T
    from hle_core.training import load_recipe

    torch.set_num_threads(1)
    cfg, tcfg = load_recipe(sys.argv[1], {"train": {"out_dir": sys.argv[2]}})
    seen, models = {"indices": []}, []
    build, one_epoch = T.build_model, T.train_one_epoch

    def build_and_keep(c):
        models.append(build(c))
        return models[-1]

    def recording_epoch(model, criterion, loader, *args, **kwargs):
        seen["world"] = dist.get_world_size() if dist.is_initialized() else 1
        seen["backend"] = dist.get_backend() if dist.is_initialized() else None
        seen["ddp"] = isinstance(model, torch.nn.parallel.DistributedDataParallel)

        class Recording:
            def __iter__(self):
                for batch in loader:
                    seen["indices"] += batch["index"].tolist()
                    yield batch

            def __len__(self):
                return len(loader)
        return one_epoch(model, criterion, Recording(), *args, **kwargs)

    T.build_model, T.train_one_epoch = build_and_keep, recording_epoch
    T.train(cfg, tcfg, progress=False)
    rank = os.environ["RANK"]
    torch.save(models[0].state_dict(), os.path.join(sys.argv[2], f"rank{rank}.pt"))
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as fh:
        json.dump(seen, fh)
''')


@pytest.mark.slow  # two processes: ~45 s
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo not available")
def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path):
    """2 steps with 2 ranks on disjoint shards: gradients are all-reduced, so both ranks end with the same
    parameters; rank 0 writes the checkpoint. (BatchNorm running statistics are per rank: DDP broadcasts
    rank 0's at every forward, so only rank 0's, the saved ones, are meaningful.)"""
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump({"hle": TINY_HLE, "train": tiny_train(
        tmp_path / "unused", steps=2, ckpt_every=0, data={"num_train": 8, "num_val": 0})}))
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    out = tmp_path / "out"
    # what `torchrun --nproc_per_node 2` hands each rank (env:// rendezvous), without the launcher process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(recipe), str(out)], cwd=tmp_path,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (0, 1)]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for s in seen:
        assert (s["world"], s["backend"], s["ddp"]) == (2, "gloo", True)
        assert len(s["indices"]) == 4                                  # 2 steps x batch 2 on each rank
    assert set(seen[0]["indices"]).isdisjoint(seen[1]["indices"])      # each rank trained on its own shard
    weights = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.manual_seed(0)                                               # the trainer's seed: its initial weights
    init = build_model(HLEConfig().override(TINY_HLE))
    params = [name for name, _ in init.named_parameters()]
    for name in params:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert all(not torch.equal(weights[0][n], init.state_dict()[n]) for n in ("head.weight", "class_means"))
    final = load_raw(out / "final.pt")
    assert final["step"] == 2
    assert_same_state(weights[0], final["model"])                      # rank 0 wrote the checkpoint


# ---- (c) every training recipe in config/ loads and validates -----------------------------------------------
RECIPES = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name != "panoptic.yaml")   # panoptic: the node

# paper §4.2 settings each recipe must keep
PAPER = {
    "cityscapes.yaml": {"backbone": "resnet50", "embedding_dim": 12, "crop_size": (1024, 2048), "lr": 1e-5,
                        "format": "cityscapes"},
    "coco.yaml": {"backbone": "resnet50", "embedding_dim": 128, "crop_size": (512, 512), "max_side": 640,
                  "format": "coco"},
    "vistas.yaml": {"backbone": "resnet50", "embedding_dim": 128, "max_side": 2048, "format": "coco"},
}

CATEGORIES = [{"id": 1, "name": "person", "isthing": 1, "supercategory": "person", "color": [220, 20, 60]},
              {"id": 149, "name": "road", "isthing": 0, "supercategory": "ground"}]


def test_recipes_are_found():
    assert {"cityscapes.yaml", "coco.yaml", "vistas.yaml", "synthetic_small.yaml"} <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_validates(name, tmp_path, monkeypatch):
    path = ROOT / "config" / name
    section = (yaml.safe_load(path.read_text()) or {}).get("hle") or {}
    classes = section.get("classes")
    if isinstance(classes, str):            # classes from the data set's JSON: a small one at that path
        monkeypatch.chdir(tmp_path)
        (tmp_path / classes).parent.mkdir(parents=True)
        (tmp_path / classes).write_text(json.dumps({"images": [], "annotations": [], "categories": CATEGORIES}))
    cfg, tcfg = load_recipe(path)
    cfg.validate()
    if isinstance(classes, str):
        assert cfg.classes.ids == [1, 149] and cfg.classes.thing_mask == [True, False]
    for key, value in (section.get("model") or {}).items():
        got = getattr(cfg.model, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, f"{name}: hle.model.{key}"
    expected = PAPER.get(name, {})
    got = {"backbone": cfg.model.backbone, "embedding_dim": cfg.model.embedding_dim, "crop_size": tcfg.crop_size,
           "lr": tcfg.lr, "max_side": tcfg.data.max_side, "format": tcfg.data.format}
    assert {k: got[k] for k in expected} == expected
    if tcfg.data.format == "synthetic":     # a recipe that runs here must find its data without a download
        assert tcfg.data.num_train >= tcfg.batch_size


def test_recipe_override_merges_the_data_section(tmp_path, monkeypatch):
    """`--set train.data.num_val=0` changes that key only; the recipe's data format and root stay."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets/coco/annotations").mkdir(parents=True)
    (tmp_path / "datasets/coco/annotations/panoptic_val2017.json").write_text(json.dumps(CATEGORIES))
    cfg, tcfg = load_recipe(ROOT / "config" / "coco.yaml", {"train": {"data": {"num_val": 0}, "steps": 7}})
    assert (tcfg.data.format, tcfg.data.root, tcfg.data.max_side, tcfg.data.num_val) == \
        ("coco", "datasets/coco", 640, 0)
    assert tcfg.steps == 7 and tcfg.batch_size == 16


def test_recipe_classes_path_is_relative_to_the_recipe(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "cats.json").write_text(json.dumps(CATEGORIES))
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text(yaml.safe_dump({"hle": {"classes": "cats.json", **TINY_HLE}, "train": {"steps": 3}}))
    monkeypatch.chdir(tmp_path)                                   # not the recipe's folder
    cfg, tcfg = load_recipe(recipe)
    assert cfg.classes.names == ["person", "road"] and cfg.model.embedding_dim == 4 and tcfg.steps == 3


# ---- (d) checkpoints of a training run ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained")
    cfg, tcfg = tiny(out, steps=2, ckpt_every=1)
    final = train(cfg, tcfg, progress=False)
    return cfg, out, final


def test_checkpoints_load_with_weights_only_and_hold_the_config(trained):
    cfg, out, final = trained
    assert final == out / "final.pt"
    for name in ("last.pt", "final.pt"):
        raw = load_raw(out / name)                       # plain torch.load(weights_only=True): no pickled classes
        assert raw["format"] == "hle-checkpoint" and raw["step"] == 2
        assert isinstance(raw["config"], str) and HLEConfig.from_json(raw["config"]).to_dict() == cfg.to_dict()
        assert raw["optimizer"]["state"] and raw["scheduler"]["last_epoch"] == 2
        extra = json.loads(raw["extra"])
        assert (extra["step"], extra["train"]["steps"], extra["train"]["data"]["format"]) == (2, 2, "synthetic")
    model = load_model(final)                            # rebuilt from the embedded config alone
    assert model.cfg.model.embedding_dim == 4 and model.cfg.classes == cfg.classes
    assert_same_state(model.state_dict(), load_raw(final)["model"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]   # atomic writes left nothing behind


def test_validation_metrics_written_after_training(trained):
    _, out, _ = trained
    metrics = json.loads((out / "val_metrics.json").read_text())
    assert metrics["step"] == 2
    for split in ("All", "Things", "Stuff"):
        assert 0.0 <= metrics["results"][split]["pq"] <= 1.0


# ---- (e) the `hle train` command ----------------------------------------------------------------------------
@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    train_section = tiny_train(tmp_path / "recipe_out_dir", tensorboard=True, log_every=1, image_every=1)
    path.write_text(yaml.safe_dump({"hle": TINY_HLE, "train": train_section}))
    return path


def test_hle_train_command_writes_final_checkpoint_and_metrics(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli_out"
    code = hle_main(["train", "--config", str(recipe), "--set", "train.steps=2", "--out", str(out), "--threads", "1",
                     "--no-progress"])
    assert code == 0
    assert f"final checkpoint: {out / 'final.pt'}" in capsys.readouterr().out
    assert load_raw(out / "final.pt")["step"] == 2                     # --set train.steps=2 beat the recipe's 4
    metrics = json.loads((out / "val_metrics.json").read_text())
    assert metrics["step"] == 2 and "pq" in metrics["results"]["All"]
    events = b"".join(e.read_bytes() for e in (out / "tb").glob("events.out.tfevents.*"))
    for tag in (b"loss/total", b"loss/seg", b"pred/overlay", b"pred/embedding_pca", b"val/pq_all"):
        assert tag in events, tag                                       # TensorBoard scalars and images
    assert not (tmp_path / "recipe_out_dir").exists()                   # --out beat train.out_dir


@pytest.mark.parametrize("bad", ["steps=2", "train.steps", "model.embedding_dim=4", "train..steps=2"])
def test_hle_train_bad_set_syntax_exits_2(recipe, bad, capsys):
    assert hle_main(["train", "--config", str(recipe), "--set", bad]) == 2
    assert f"hle train: error: --set expects hle.<key>=<value> or train.<key>=<value>, got '{bad}'" in \
        capsys.readouterr().err


def test_hle_train_unknown_set_key_exits_2(recipe, capsys):
    assert hle_main(["train", "--config", str(recipe), "--set", "train.stpes=2"]) == 2
    assert "unknown keys in train: ['stpes']" in capsys.readouterr().err


def test_hle_train_missing_recipe_exits_2(tmp_path, capsys):
    assert hle_main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"hle train: error: recipe not found: {tmp_path / 'nope.yaml'}" in capsys.readouterr().err


def test_hle_train_corrupt_resume_checkpoint_is_a_clear_error(recipe, tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert hle_main(["train", "--config", str(recipe), "--resume", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"hle train: error: cannot read checkpoint {bad} (truncated or corrupt?)" in err
    assert "Traceback" not in err
    assert hle_main(["train", "--config", str(recipe), "--resume", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


# ---- (f) it learns: the loss falls on a fixed batch ---------------------------------------------------------
@pytest.mark.slow  # ~25 s
def test_loss_decreases_on_a_fixed_batch(tmp_path):
    """30 steps of the real training step (train_one_epoch: forward, eq. 16 loss, Adam, poly schedule) on one
    batch. Deterministic on CPU (fixed seeds); measured here: total 4.1 -> ~1.7, seg (eq. 12) 0.89 -> ~0.67."""
    from torch.utils.data import default_collate

    from hle_core.losses import HierarchicalLovaszLoss
    from hle_core.training import build_train_dataset

    cfg, tcfg = tiny(tmp_path, steps=30, data={"num_train": 2})
    dataset = build_train_dataset(cfg, tcfg)
    batch = default_collate([dataset[0], dataset[1]])
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_lr(s, tcfg))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    history: list[dict[str, float]] = []
    done = train_one_epoch(model, HierarchicalLovaszLoss(cfg), [batch] * 30, optimizer, scheduler, scaler,
                           TrainState(), tcfg, torch.device("cpu"), lambda st, terms, out, b: history.append(terms))
    assert done and len(history) == 30

    def mean(key: str, rows: list[dict[str, float]]) -> float:
        return sum(r[key] for r in rows) / len(rows)

    assert mean("total", history[-5:]) < 0.75 * mean("total", history[:3]), [round(h["total"], 3) for h in history]
    assert mean("seg", history[-5:]) < 0.9 * mean("seg", history[:3]), [round(h["seg"], 3) for h in history]


def test_gpu_recipe_trains_the_shipped_network():
    """config/synthetic_gpu.yaml trains the network of config/synthetic_street.yaml (the shipped default's), so its
    checkpoints are drop-in releases and it can start from the shipped weights; it asks for CUDA and AMP."""
    gpu_cfg, gpu = load_recipe(ROOT / "config" / "synthetic_gpu.yaml")
    cpu_cfg, cpu = load_recipe(ROOT / "config" / "synthetic_street.yaml")
    assert gpu_cfg.model == cpu_cfg.model and gpu_cfg.classes == cpu_cfg.classes and gpu_cfg.loss == cpu_cfg.loss
    assert (gpu.device, gpu.amp, gpu.data.image_size, gpu.data.val_seed) == ("cuda", True, cpu.data.image_size,
                                                                            cpu.data.val_seed)
    assert gpu.batch_size > cpu.batch_size and gpu.data.cache_dir != cpu.data.cache_dir
