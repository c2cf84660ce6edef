"""Training datasets and joint transforms: targets, dtypes, determinism, image/label alignment, thing crops."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hle_core.config import LossConfig, ModelConfig, street_class_table
from hle_core.data.dataset import PanopticDataset, SyntheticDataset, panoptic_to_targets
from hle_core.data.coco_panoptic import CocoPanopticWriter, coco_paths
from hle_core.data.synthetic import SceneGenerator
from hle_core.data.transforms import (ColorJitter, Compose, RandomCrop, RandomHorizontalFlip, RandomScale,
                                      ResizeMaxSide, train_transforms)

CLASSES = street_class_table()
IGNORE = LossConfig().ignore_index
SIZE = (64, 128)


def _targets_oracle(pan):
    """Per-pixel Python loop: class index / ignore, instances numbered by increasing panoptic id."""
    index = {c.id: k for k, c in enumerate(CLASSES.classes)}
    thing = {c.id for c in CLASSES.classes if c.isthing}
    inst_ids = sorted({int(v) for v in pan.ravel() if v >= 1000 and v // 1000 in thing})
    sem = np.full(pan.shape, IGNORE, np.int64)
    ins = np.zeros(pan.shape, np.int64)
    for (y, x), v in np.ndenumerate(pan):
        cat = v // 1000 if v >= 1000 else v
        if v == 0 or cat not in index or (cat in thing and v < 1000):
            continue
        sem[y, x] = index[cat]
        if cat in thing:
            ins[y, x] = inst_ids.index(int(v)) + 1
    return sem, ins


def test_panoptic_to_targets_matches_oracle():
    rng = np.random.default_rng(0)
    values = np.array([0, 7, 8, 23, 24, 26, 24000, 24003, 26001, 33002, 12, 5000, 99001])   # incl. crowd, unknown
    pan = rng.choice(values, size=(12, 17)).astype(np.int32)
    sem, ins = panoptic_to_targets(torch.from_numpy(pan), CLASSES, IGNORE)
    osem, oins = _targets_oracle(pan)
    assert sem.dtype == torch.int64 and ins.dtype == torch.int64
    assert np.array_equal(sem.numpy(), osem) and np.array_equal(ins.numpy(), oins)
    # all-instance map (no 0 in the instance id list) and empty map
    full = torch.full((3, 3), 26005, dtype=torch.int32)
    assert panoptic_to_targets(full, CLASSES)[1].unique().tolist() == [1]
    s, i = panoptic_to_targets(torch.zeros(4, 4, dtype=torch.int32), CLASSES)
    assert (s == IGNORE).all() and (i == 0).all()


def test_synthetic_dataset_item_types_and_normalisation():
    ds = SyntheticDataset(4, seed=3, size=SIZE)
    item = ds[1]
    assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.float32
    assert item["semantic"].shape == SIZE and item["semantic"].dtype == torch.int64
    assert item["instance"].shape == SIZE and item["instance"].dtype == torch.int64
    assert item["panoptic"].dtype == torch.int32
    frame = SceneGenerator(SIZE, seed=3).frame(1)
    mc = ModelConfig()
    raw = item["image"] * torch.tensor(mc.std).view(3, 1, 1) + torch.tensor(mc.mean).view(3, 1, 1)
    assert torch.allclose(raw * 255, torch.from_numpy(frame.image).permute(2, 0, 1).float(), atol=1e-3)
    assert np.array_equal(item["panoptic"].numpy(), frame.panoptic)
    osem, oins = _targets_oracle(frame.panoptic)
    assert np.array_equal(item["semantic"].numpy(), osem) and np.array_equal(item["instance"].numpy(), oins)
    with pytest.raises(IndexError):
        ds[4]


def test_dataset_augmentation_deterministic_per_seed_and_collates():
    tf = train_transforms(CLASSES, (48, 64), (0.75, 1.25), 0.5, True, 0.2)
    ds = SyntheticDataset(3, seed=0, size=SIZE, transforms=tf)
    a, b = ds[(2, 11)], ds[(2, 11)]
    for k in a:
        assert torch.equal(a[k], b[k])
    c = ds[(2, 12)]
    assert not torch.equal(a["image"], c["image"])
    assert torch.equal(ds[1]["image"], ds[1]["image"])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 48, 64) and batch["semantic"].shape == (3, 48, 64)


def _coded_sample(h=60, w=90, block=15):
    """Panoptic blocks with distinct ids and an image whose colour encodes the id of each pixel."""
    ids = np.array([7, 8, 11, 21, 23, 24000, 24001, 26000, 26001, 33000, 33001, 26])
    by, bx = np.meshgrid(np.arange(h) // block, np.arange(w) // block, indexing="ij")
    pan = ids[(by * 7 + bx * 3) % len(ids)].astype(np.int32)
    code = {int(v): (i + 1) / (len(ids) + 1) for i, v in enumerate(ids)}
    img = np.stack([np.vectorize(code.get)(pan)] * 3).astype(np.float32)
    img[1] = 1 - img[1]
    return {"image": torch.from_numpy(img), "panoptic": torch.from_numpy(pan)}, code


def _assert_aligned(out, code):
    img, pan = out["image"].numpy(), out["panoptic"].numpy().astype(np.int64)
    # interior pixels: all 8 neighbours share the label, so bilinear resampling cannot mix colours there
    p = np.pad(pan, 1, constant_values=-1)
    interior = np.ones(pan.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            interior &= p[1 + dy:1 + dy + pan.shape[0], 1 + dx:1 + dx + pan.shape[1]] == pan
    interior &= pan != 0                       # padding
    assert interior.sum() > 100
    expected = np.vectorize(lambda v: code[int(v)])(pan[interior])
    assert np.allclose(img[0][interior], expected, atol=1e-4)
    assert np.allclose(img[1][interior], 1 - expected, atol=1e-4)
    assert (img[:, pan == 0] == 0).all()       # padded area: black image, void label


@pytest.mark.parametrize("seed", range(8))
def test_geometric_transforms_keep_image_and_labels_aligned(seed):
    sample, code = _coded_sample()
    tf = Compose([RandomScale(0.6, 1.6), RandomCrop((50, 100), CLASSES, 0.5), RandomHorizontalFlip(0.5)])
    out = tf(sample, torch.Generator().manual_seed(seed))
    assert out["image"].shape == (3, 50, 100) and out["panoptic"].shape == (50, 100)
    assert out["panoptic"].dtype == torch.int32
    _assert_aligned(out, code)


def test_flip_and_resize_max_side_alignment():
    sample, code = _coded_sample()
    out = RandomHorizontalFlip(1.0)(sample, torch.Generator())
    assert torch.equal(out["panoptic"], sample["panoptic"].flip(-1))
    _assert_aligned(out, code)
    out = ResizeMaxSide(45)(sample)
    assert tuple(out["panoptic"].shape) == (30, 45)
    _assert_aligned(out, code)


def test_color_jitter_changes_image_only():
    sample, _ = _coded_sample()
    geo = Compose([RandomScale(0.8, 1.2), RandomCrop((40, 40), CLASSES, 0.5)])
    with_jitter = Compose([*geo.transforms, ColorJitter(0.4, 0.4, 0.4)])
    a = geo(sample, torch.Generator().manual_seed(5))
    b = with_jitter(sample, torch.Generator().manual_seed(5))
    assert torch.equal(a["panoptic"], b["panoptic"])
    assert not torch.allclose(a["image"], b["image"])
    assert b["image"].min() >= 0 and b["image"].max() <= 1


def test_thing_crop_always_contains_the_instance():
    pan = torch.full((200, 300), 7, dtype=torch.int32)
    pan[170:180, 280:290] = 26004                 # one small car in a far corner
    pan[0:10, 0:10] = 26                          # crowd: never a crop centre
    sample = {"image": torch.zeros(3, 200, 300), "panoptic": pan}
    crop = RandomCrop((40, 40), CLASSES, thing_prob=1.0)
    for seed in range(20):
        out = crop(sample, torch.Generator().manual_seed(seed))
        assert (out["panoptic"] == 26004).any()
    hits = sum(bool((RandomCrop((40, 40), CLASSES, 0.0)(sample, torch.Generator().manual_seed(s))["panoptic"]
                     == 26004).any()) for s in range(20))
    assert hits < 10                              # uniform crops mostly miss it


def test_transform_argument_errors():
    with pytest.raises(ValueError, match="min_scale"):
        RandomScale(1.5, 1.0)
    with pytest.raises(ValueError, match="thing_prob"):
        RandomCrop((10, 10), CLASSES, 1.5)
    with pytest.raises(ValueError, match="same size"):
        RandomHorizontalFlip(1.0)({"image": torch.zeros(3, 4, 4), "panoptic": torch.zeros(4, 5)}, torch.Generator())


def test_panoptic_dataset_reads_coco_from_disk(tmp_path):
    gen = SceneGenerator(SIZE, seed=9)
    frames = [gen.frame(i) for i in range(2)]
    with CocoPanopticWriter(*coco_paths(tmp_path, "train"), classes=CLASSES) as w:
        for i, f in enumerate(frames):
            w.add(i, f"{i:03d}", f.image, f.panoptic)
    ds = PanopticDataset(tmp_path, "coco", CLASSES, split="train")
    assert len(ds) == 2
    item = ds[1]
    assert np.array_equal(item["panoptic"].numpy(), frames[1].panoptic)
    osem, oins = _targets_oracle(frames[1].panoptic)
    assert np.array_equal(item["semantic"].numpy(), osem) and np.array_equal(item["instance"].numpy(), oins)
    with pytest.raises(ValueError, match="format"):
        PanopticDataset(tmp_path, "vistas")
    with pytest.raises(FileNotFoundError, match="panoptic_val.json"):
        PanopticDataset(tmp_path, "coco", split="val")


@pytest.mark.parametrize("size", [(97, 131), (41, 57), (60, 45)])
def test_resize_matches_opencv_half_pixel_geometry(size):
    """Oracle: OpenCV's nearest-exact (labels) and bilinear (image, when enlarging) use the same half-pixel
    centres as the transforms, so a sub-pixel misalignment between image and labels would show here."""
    import cv2

    from hle_core.data.transforms import resize_sample

    rng = np.random.default_rng(1)
    pan = rng.integers(0, 40000, (60, 90)).astype(np.int32)
    img = rng.random((3, 60, 90)).astype(np.float32)
    out = resize_sample({"image": torch.from_numpy(img), "panoptic": torch.from_numpy(pan)}, size)
    h, w = size
    ref = cv2.resize(pan.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(np.int32)
    assert np.array_equal(out["panoptic"].numpy(), ref)
    if h >= 60 and w >= 90:
        ref_img = cv2.resize(img.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        assert np.allclose(out["image"].numpy(), ref_img, atol=1e-4)
