"""Tests for hle_core.decoding (paper §3.5) on hand-built embedding maps whose panoptic answer is known.

Construction: class means are the first K standard basis vectors of R^D; an instance of class c has the
embedding normalise(μ_c + α·u) for a direction u among ±e_K..±e_{D-1}, so two instances of one class
lie at d_cos = α²/(1+α²)·(1 - u₁·u₂) ≥ 0.2 from each other and at 1 - 1/√(1+α²) ≈ 0.11 from their class
mean. With σ = 0.1 the instance kernel Φ between different instances is ≤ exp(-10), and with σ_k = 0.3
every pixel's ψ of its own class is ≈ 0.95. Seeds are Gaussian bumps with a single maximum per instance.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from hle_core.config import LABEL_DIVISOR, DecoderConfig, HLEConfig, street_class_table
from hle_core.decoding import (
    DecoderInputError,
    assign_semantics,
    PanopticResult,
    decode_batch,
    decode_panoptic,
    downsample_outputs,
    find_seeds,
    greedy_suppression,
    merge_seeds,
    number_instances,
    segment_statistics,
    instance_masks,
    kernel_features,
    kernel_weights,
    upsample_labels,
    window_max,
    window_pixel_counts,
)
from hle_core.decoding import instances as instances_module
from hle_core.decoding import panoptic as panoptic_module
from hle_core.decoding import refine as refine_module
from hle_core.decoding import (COARSE_FACTOR, EXACT_MAX_PIXELS, EXACT_MAX_SEEDS, border_cells, cell_pixels,
                               neighbourhood_masks)
from hle_core.decoding import seeds as seeds_module
from hle_core.decoding import semantic as semantic_module
from hle_core.decoding.fast import window_mean
from hle_core.decoding.indexing import gather_columns, lookup, put
from hle_core.decoding.segments import LANES, lane_bincount, lane_index_add, lane_keys
from hle_core.kernels import class_logits, instance_kernel

CLASSES = street_class_table()
K = len(CLASSES)
D = HLEConfig().model.embedding_dim
INDEX = {c.name: k for k, c in enumerate(CLASSES.classes)}
CAT_ID = {c.name: c.id for c in CLASSES.classes}
ALPHA = 0.5             # instance offset from its class mean
SIGMA = 0.1             # instance σ (cosine units)
CLASS_SIGMA = 0.3       # σ_k
COORD_SCALE = 64.0
FAR = 100.0             # σ_spatial that makes the spatial factor ≈ 1 inside an image
CLASS_MEANS = torch.eye(K, D, dtype=torch.float64)
CFG = DecoderConfig()


# ---------------------------------------------------------------------------------------------------
# hand-built scenes
class Scene:
    """Per-pixel network outputs of a constructed image plus its ground-truth panoptic layout."""

    def __init__(self, h: int, w: int, background: str = "road", sigma_spatial: float = FAR):
        self.h, self.w = h, w
        self.embedding = CLASS_MEANS[INDEX[background]].view(D, 1, 1).repeat(1, h, w)
        self.seed = torch.zeros(h, w, dtype=torch.float64)
        self.sigma = torch.full((1, h, w), SIGMA, dtype=torch.float64)
        self.sigma_spatial = torch.full((1, h, w), sigma_spatial, dtype=torch.float64)
        self.stuff = np.full((h, w), INDEX[background])                  # class index of stuff regions
        self.instances: list[dict] = []                                   # name, mask, score

    def add_stuff(self, rows: slice, cols: slice, name: str) -> None:
        self.embedding[:, rows, cols] = CLASS_MEANS[INDEX[name]].view(D, 1, 1)
        self.stuff[rows, cols] = INDEX[name]

    def add_instance(self, rows: slice, cols: slice, name: str, direction: int, score: float,
                     seed_radius: float = 1.5, embedding: torch.Tensor | None = None) -> None:
        """A rectangle of class ``name``; ``direction`` in 0..2(D-K)-1 picks ±e_{K + direction // 2}."""
        if embedding is None:
            u = torch.zeros(D, dtype=torch.float64)
            u[K + direction // 2] = 1.0 if direction % 2 == 0 else -1.0
            embedding = F.normalize(CLASS_MEANS[INDEX[name]] + ALPHA * u, dim=0)
        self.embedding[:, rows, cols] = embedding.view(D, 1, 1)
        ys = torch.arange(self.h, dtype=torch.float64)[rows]
        xs = torch.arange(self.w, dtype=torch.float64)[cols]
        cy, cx = float(ys[len(ys) // 2]), float(xs[len(xs) // 2])
        bump = torch.exp(-((ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2) / (2 * seed_radius ** 2))
        self.seed[rows, cols] = score * bump
        mask = np.zeros((self.h, self.w), bool)
        mask[rows, cols] = True
        for other in self.instances:                                      # later instances paint over
            other["mask"] &= ~mask
        self.instances.append({"name": name, "mask": mask, "score": score})

    def expected_panoptic(self) -> np.ndarray:
        """Cityscapes ids by construction: k numbered per class in descending score order."""
        out = np.vectorize(lambda k: CLASSES.classes[k].id)(self.stuff)
        for name in {i["name"] for i in self.instances}:
            same = sorted((i for i in self.instances if i["name"] == name), key=lambda i: -i["score"])
            for k, inst in enumerate(same):
                out[inst["mask"]] = CAT_ID[name] * LABEL_DIVISOR + k
        return out

    def decode(self, cfg: DecoderConfig = CFG, **kw) -> PanopticResult:
        return decode_panoptic(self.embedding, self.sigma, self.sigma_spatial, self.seed[None], CLASS_MEANS,
                               torch.full((K,), CLASS_SIGMA, dtype=torch.float64), CLASSES, cfg, COORD_SCALE, **kw)


def _psi_oracle(e: np.ndarray) -> np.ndarray:
    """eq. 9 written out: ψ_k = exp(-(1-μ_k·e)/(2σ_k²)) / Σ_c exp(-(1-μ_c·e)/(2σ_c²)); e is (D, N)."""
    p = np.exp(-(1.0 - CLASS_MEANS.numpy() @ e) / (2 * CLASS_SIGMA ** 2))
    return p / p.sum(0, keepdims=True)


def _check_consistency(res: PanopticResult, embedding: torch.Tensor) -> None:
    """(g): segment list ↔ panoptic map, areas, boxes and mean embeddings against brute force."""
    pan = res.panoptic.numpy()
    assert res.panoptic.dtype == torch.int32 and res.semantic.dtype == torch.int64
    ids = res.ids.tolist()
    assert set(ids) == set(np.unique(pan).tolist()) - {0}
    assert len(ids) == len(set(ids))
    e = embedding.numpy().reshape(embedding.shape[0], -1)
    for i, seg in enumerate(res.to_list()):
        mask = pan == seg["id"]
        ys, xs = np.nonzero(mask)
        assert seg["area"] == mask.sum()
        assert seg["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()]
        mean = e[:, mask.ravel()].mean(1)
        np.testing.assert_allclose(seg["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
        expect_cat = seg["id"] // LABEL_DIVISOR if seg["isthing"] else seg["id"]
        assert seg["category_id"] == expect_cat
        assert seg["isthing"] == CLASSES.classes[CLASSES.index_of_id(expect_cat)].isthing
    # k = 0, 1, ... per class, descending score
    things = [s for s in res.to_list() if s["isthing"]]
    for cat in {s["category_id"] for s in things}:
        same = sorted((s for s in things if s["category_id"] == cat), key=lambda s: -s["score"])
        assert [s["id"] - cat * LABEL_DIVISOR for s in same] == list(range(len(same)))


# ---------------------------------------------------------------------------------------------------
# (a)-(h): end-to-end cases
def test_touching_instances_of_one_class_get_exact_masks():
    scene = Scene(40, 64)
    scene.add_instance(slice(10, 30), slice(8, 32), "car", direction=0, score=0.9)
    scene.add_instance(slice(10, 30), slice(32, 56), "car", direction=2, score=0.8)
    res = scene.decode()
    expected = scene.expected_panoptic()
    assert {26000, 26001} <= set(np.unique(expected).tolist())
    np.testing.assert_array_equal(res.panoptic.numpy(), expected)
    assert res.num_instances == 2
    _check_consistency(res, scene.embedding)


def test_identical_embeddings_far_apart_are_separated_by_the_spatial_kernel():
    scene = Scene(32, 128, sigma_spatial=0.25)
    same = F.normalize(CLASS_MEANS[INDEX["person"]] + ALPHA * torch.eye(D, dtype=torch.float64)[K], dim=0)
    scene.add_instance(slice(8, 24), slice(4, 24), "person", 0, score=0.9, embedding=same)
    scene.add_instance(slice(8, 24), slice(100, 120), "person", 0, score=0.7, embedding=same)
    res = scene.decode()
    np.testing.assert_array_equal(res.panoptic.numpy(), scene.expected_panoptic())
    assert res.num_instances == 2
    # control: without the spatial factor the second seed merges into the first, one instance covers both
    scene.sigma_spatial.fill_(FAR)
    merged = scene.decode()
    assert merged.num_instances == 1
    both = scene.instances[0]["mask"] | scene.instances[1]["mask"]
    np.testing.assert_array_equal(merged.panoptic.numpy() == 24000, both)


def test_stuff_only_image():
    scene = Scene(40, 32)
    scene.add_stuff(slice(0, 10), slice(None), "sky")
    scene.add_stuff(slice(10, 20), slice(None), "building")
    res = scene.decode()
    np.testing.assert_array_equal(res.panoptic.numpy(), scene.expected_panoptic())
    np.testing.assert_array_equal(res.semantic.numpy(), scene.stuff)
    assert res.ids.tolist() == [CAT_ID["road"], CAT_ID["building"], CAT_ID["sky"]]
    assert not res.is_thing.any() and res.num_instances == 0
    assert res.category_ids.tolist() == res.ids.tolist()
    psi = _psi_oracle(CLASS_MEANS.T.numpy()).max(0)[0]              # ψ at a class mean, same for all classes
    np.testing.assert_allclose(res.scores.numpy(), psi, rtol=1e-5)
    _check_consistency(res, scene.embedding)


def test_everything_below_thresholds_is_void():
    scene = Scene(24, 24)
    scene.embedding[:] = torch.eye(D, dtype=torch.float64)[D - 1].view(D, 1, 1)   # equidistant: ψ = 1/K
    scene.seed.fill_(CFG.seed_threshold * 0.5)
    res = scene.decode()
    assert (res.panoptic == 0).all() and len(res) == 0 and res.to_list() == []
    assert res.boxes.shape == (0, 4) and res.embeddings.shape == (0, D)
    # thing pixels with seeds under the threshold: no instance, void (not stuff)
    scene.embedding[:] = CLASS_MEANS[INDEX["car"]].view(D, 1, 1)
    res = scene.decode()
    assert (res.semantic == INDEX["car"]).all() and (res.panoptic == 0).all() and len(res) == 0


@pytest.mark.parametrize("h,w", [(0, 16), (16, 0), (1, 1)])
def test_degenerate_sizes_do_not_crash(h, w):
    scene = Scene(h, w)
    res = scene.decode()
    assert res.panoptic.shape == (h, w) and len(res) == 0          # 1x1 road: below min_stuff_area


def test_min_area_filter_and_renumbering():
    scene = Scene(48, 64)
    scene.add_stuff(slice(0, 2), slice(None), "sidewalk")           # 128 px < min_stuff_area
    scene.add_instance(slice(10, 16), slice(10, 16), "car", 0, score=0.95)   # 36 px < min_instance_area
    scene.add_instance(slice(20, 30), slice(30, 40), "car", 2, score=0.7)    # 100 px
    res = scene.decode()
    pan = res.panoptic.numpy()
    assert CFG.min_instance_area > 36 and CFG.min_stuff_area > 128
    assert (pan[scene.instances[0]["mask"]] == 0).all()
    assert (pan[:2] == 0).all()
    assert (pan[scene.instances[1]["mask"]] == 26000).all()        # renumbered to k = 0 after filtering
    assert res.ids.tolist() == [CAT_ID["road"], 26000]
    no_filter = scene.decode(dataclasses.replace(CFG, min_instance_area=0, min_stuff_area=0))
    assert set(no_filter.ids.tolist()) == {CAT_ID["road"], CAT_ID["sidewalk"], 26000, 26001}
    _check_consistency(res, scene.embedding)


def _street_scene(h: int, w: int, scale: int = 1) -> Scene:
    """Three stuff classes and eight instances of three thing classes on a ``(scale·h, scale·w)`` map."""
    h, w = scale * h, scale * w
    scene = Scene(h, w, sigma_spatial=2.0)
    scene.add_stuff(slice(0, h // 4), slice(None), "sky")
    scene.add_stuff(slice(h // 4, h // 2), slice(None), "building")
    scene.add_stuff(slice(h // 2, h // 2 + 9), slice(3, w - 5), "sidewalk")
    boxes = [(17, 45, 5, 35, "person", 0.9), (21, 50, 37, 58, "person", 0.8), (50, 90, 61, 123, "car", 0.95),
             (55, 97, 123, 170, "car", 0.75), (70, 118, 171, 233, "car", 0.85), (33, 61, 201, 230, "bicycle", 0.7),
             (93, 121, 9, 51, "bicycle", 0.88), (60, 101, 231, 249, "person", 0.66)]
    for j, (y0, y1, x0, x1, name, score) in enumerate(boxes):
        scene.add_instance(slice(scale * y0, scale * y1), slice(scale * x0, scale * x1), name, direction=j % 6,
                           score=score, seed_radius=4.0 * scale)
    return scene


def test_fast_mode_matches_full_decode_up_to_boundaries():
    factor = 4
    scene = _street_scene(126, 250, scale=2)                          # not multiples of 4: partial windows
    full = scene.decode()
    expected = scene.expected_panoptic()
    np.testing.assert_array_equal(full.panoptic.numpy(), expected)
    fast = scene.decode(dataclasses.replace(CFG, fast_downsample=factor))
    assert fast.panoptic.shape == full.panoptic.shape
    differ = (fast.panoptic != full.panoptic).numpy()
    assert differ.mean() <= 0.05, differ.mean()
    # every disagreement lies within one pooling window of a true segment boundary
    boundary = np.zeros_like(differ)
    boundary[:-1] |= expected[:-1] != expected[1:]
    boundary[1:] |= expected[:-1] != expected[1:]
    boundary[:, :-1] |= expected[:, :-1] != expected[:, 1:]
    boundary[:, 1:] |= expected[:, :-1] != expected[:, 1:]
    near = scipy.ndimage.binary_dilation(boundary, np.ones((2 * factor - 1, 2 * factor - 1), bool))
    assert not (differ & ~near).any()
    assert set(fast.ids.tolist()) == set(full.ids.tolist())
    _check_consistency(fast, scene.embedding)                          # statistics at full resolution
    _check_consistency(full, scene.embedding)


def test_segment_scores_follow_their_definitions():
    scene = _street_scene(126, 250)
    res = scene.decode()
    pan = res.panoptic.numpy()
    e = scene.embedding.numpy().reshape(D, -1)
    psi = _psi_oracle(e).max(0)
    for seg in res.to_list():
        mask = pan == seg["id"]
        if seg["isthing"]:                                             # seed value at the instance's seed
            assert seg["score"] == pytest.approx(scene.seed.numpy()[mask].max(), rel=1e-6)
        else:                                                          # mean ψ over the segment
            assert seg["score"] == pytest.approx(psi[mask.ravel()].mean(), rel=1e-5)


def test_decode_batch_loops_over_images():
    a, b = Scene(40, 64), Scene(40, 64, sigma_spatial=0.25)
    a.add_instance(slice(10, 30), slice(8, 32), "car", 0, score=0.9)
    b.add_stuff(slice(0, 8), slice(None), "sky")
    for x0 in (2, 44):                                                # separable only by the spatial kernel
        b.add_instance(slice(12, 30), slice(x0, x0 + 18), "person", 0, score=0.8)
    outputs = {"embedding": torch.stack((a.embedding, b.embedding)), "sigma": torch.cat((a.sigma, b.sigma))[:, None],
               "sigma_spatial": torch.cat((a.sigma_spatial, b.sigma_spatial))[:, None],
               "seed": torch.stack((a.seed, b.seed))[:, None]}
    params = {"class_means": CLASS_MEANS, "class_sigma": torch.full((K,), CLASS_SIGMA, dtype=torch.float64)}
    results = decode_batch(outputs, params, CLASSES, CFG, COORD_SCALE)
    assert len(results) == 2
    for got, scene in zip(results, (a, b)):
        np.testing.assert_array_equal(got.panoptic.numpy(), scene.expected_panoptic())
    with pytest.raises(DecoderInputError, match="seed"):
        decode_batch({k: v for k, v in outputs.items() if k != "seed"}, params, CLASSES, CFG, COORD_SCALE)


def test_bad_shapes_raise_value_error_naming_them():
    s = Scene(8, 12)
    cs = torch.full((K,), CLASS_SIGMA, dtype=torch.float64)
    good = dict(embedding=s.embedding, sigma=s.sigma, sigma_spatial=s.sigma_spatial, seed=s.seed,
                class_means=CLASS_MEANS, class_sigma=cs)
    bad = [
        ("embedding", s.embedding[0], r"\(8, 12\)"),
        ("sigma", torch.ones(1, 8, 13), r"\(1, 8, 13\)"),
        ("seed", torch.ones(2, 8, 12), r"\(2, 8, 12\)"),
        ("class_means", torch.eye(K, D + 1), rf"\({K}, {D + 1}\)"),
        ("class_sigma", torch.ones(K + 1), rf"\({K + 1},\)"),
    ]
    for name, value, shape in bad:
        with pytest.raises(ValueError, match=shape):
            decode_panoptic(**(good | {name: value}), classes=CLASSES, cfg=CFG, coord_scale=COORD_SCALE)
    with pytest.raises(TypeError, match="ndarray"):
        decode_panoptic(**(good | {"seed": s.seed.numpy()}), classes=CLASSES, cfg=CFG, coord_scale=COORD_SCALE)
    with pytest.raises(ValueError, match="semantic_logits"):
        decode_panoptic(**good, classes=CLASSES, cfg=CFG, coord_scale=COORD_SCALE, semantic_logits=torch.ones(K, 8, 11))


# ---------------------------------------------------------------------------------------------------
# steps against independent oracles
@pytest.mark.parametrize("block", [7, 1 << 16])
def test_assign_semantics_is_argmax_of_eq9(block, monkeypatch):
    monkeypatch.setattr(semantic_module, "_CPU_PIXELS_PER_BLOCK", block)
    rng = np.random.default_rng(9)
    e = rng.normal(size=(D, 50))
    e /= np.linalg.norm(e, axis=0)
    semantic, psi_max = assign_semantics(torch.from_numpy(e), CLASS_MEANS, torch.full((K,), CLASS_SIGMA,
                                                                                      dtype=torch.float64))
    psi = _psi_oracle(e)
    np.testing.assert_array_equal(semantic.numpy(), psi.argmax(0))
    np.testing.assert_allclose(psi_max.numpy(), psi.max(0), rtol=1e-12)
    logits = torch.from_numpy(rng.normal(size=(K, 50)))                       # Table 6: separate branch
    semantic, psi_max = assign_semantics(torch.from_numpy(e), CLASS_MEANS, torch.ones(K, dtype=torch.float64), logits)
    np.testing.assert_array_equal(semantic.numpy(), logits.argmax(0).numpy())
    torch.testing.assert_close(psi_max, logits.softmax(0).amax(0))


def _greedy_loop(suppresses: np.ndarray) -> np.ndarray:
    keep = np.zeros(len(suppresses), bool)
    for j in range(len(suppresses)):
        keep[j] = not any(keep[i] and suppresses[i, j] for i in range(j))
    return keep


@pytest.mark.parametrize("c,density", [(0, 0.0), (1, 0.5), (7, 0.3), (40, 0.05), (40, 0.5), (64, 0.9)])
def test_greedy_suppression_equals_sequential_greedy(c, density):
    """The CPU path (the loop over candidates) and the GPU path (the fixed point, run here on CPU tensors) both
    give the textbook greedy result, also on the longest suppression chain."""
    fixed_point = seeds_module._greedy_fixed_point
    rng = np.random.default_rng(c)
    for _ in range(5):
        a = rng.random((c, c)) < density
        want = _greedy_loop(np.triu(a, 1))
        np.testing.assert_array_equal(greedy_suppression(torch.from_numpy(a)).numpy(), want)
        np.testing.assert_array_equal(fixed_point(torch.triu(torch.from_numpy(a), 1)).numpy(), want)
    chain = np.eye(c, k=1, dtype=bool)                                # longest chain: alternate keep/drop
    for got in (greedy_suppression(torch.from_numpy(chain)), fixed_point(torch.from_numpy(chain))):
        np.testing.assert_array_equal(got.numpy(), np.arange(c) % 2 == 0)


def test_merge_seeds_uses_phi_of_the_higher_scored_seed():
    rng = np.random.default_rng(1)
    c = 12
    e = rng.normal(size=(c, D))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    rho, sig, sig_sp = rng.random((c, 2)), 0.3 + rng.random(c), 0.2 + rng.random(c)
    e[3], rho[3] = e[1], rho[1]                                       # a duplicate of seed 1: always dropped
    phi = np.array([[math.exp(-(1 - e[i] @ e[j]) / (2 * sig[i] ** 2)
                              - ((rho[i] - rho[j]) ** 2).sum() / (2 * sig_sp[i] ** 2))
                     for j in range(c)] for i in range(c)])
    for thr in (0.2, 0.5, 0.8):
        got = merge_seeds(*(torch.from_numpy(x) for x in (e, rho, sig, sig_sp)), thr).numpy()
        np.testing.assert_array_equal(got, _greedy_loop(np.triu(phi > thr, 1)))
        assert not got[3]


def test_find_seeds_equals_maximum_filter_oracle():
    rng = np.random.default_rng(2)
    seed = rng.random((30, 40))
    thing = rng.random((30, 40)) < 0.7
    masked = np.where(thing, seed, 0.0)
    for kernel, thr, top in ((3, 0.5, 256), (5, 0.3, 256), (3, 0.5, 7)):
        peaks = (masked == scipy.ndimage.maximum_filter(masked, kernel, mode="constant", cval=-np.inf)) & (masked > thr)
        flat = np.flatnonzero(peaks)
        order = flat[np.argsort(-masked.ravel()[flat], kind="stable")][:top]
        idx, score = find_seeds(torch.from_numpy(seed), torch.from_numpy(thing), kernel, thr, top)
        np.testing.assert_array_equal(idx.numpy(), order)
        np.testing.assert_allclose(score.numpy(), masked.ravel()[order])


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_window_max_equals_max_pool(kernel):
    for shape in ((1, 1), (2, 9), (17, 13)):
        x = torch.rand(shape)
        want = F.max_pool2d(x[None], kernel, 1, kernel // 2)[0]
        torch.testing.assert_close(window_max(x, kernel), want, rtol=0, atol=0)


def test_segment_statistics_equal_brute_force():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=(17, 23))
    labels[labels == 4] = 2                                           # segment 4 empty
    emb = rng.normal(size=(5, 17, 23))
    areas, boxes, means = segment_statistics(torch.from_numpy(labels), torch.from_numpy(emb), 7)
    for m in range(7):
        mask = labels == m
        assert areas[m] == mask.sum()
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert boxes[m].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
            v = emb[:, mask].sum(1)
            np.testing.assert_allclose(means[m].numpy(), v / np.linalg.norm(v), atol=1e-12)
        else:
            assert boxes[m].tolist() == [0, 0, 0, 0] and (means[m] == 0).all()


def test_number_instances_ranks_by_score_within_class():
    rng = np.random.default_rng(4)
    cat = rng.integers(0, 3, size=20)
    score = rng.random(20)
    valid = rng.random(20) < 0.7
    got = number_instances(*(torch.from_numpy(x) for x in (cat, score, valid)), num_classes=3).numpy()
    for m in range(20):
        if valid[m]:
            assert got[m] == sum(1 for j in range(20) if valid[j] and cat[j] == cat[m] and score[j] > score[m])
        else:
            assert got[m] == -1


def test_fast_mode_pooling_windows():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(3, 10, 7))
    maps = [rng.random((10, 7)) for _ in range(3)]
    unit, *small, mean = downsample_outputs(torch.from_numpy(e), *(torch.from_numpy(m) for m in maps), factor=4)
    counts = window_pixel_counts((10, 7), 4).numpy()
    assert unit.shape == mean.shape == (3, 3, 2) and counts.shape == (3, 2)
    for y in range(3):
        for x in range(2):
            win = (slice(4 * y, 4 * y + 4), slice(4 * x, 4 * x + 4))
            v = e[(slice(None), *win)].reshape(3, -1).mean(1)
            np.testing.assert_allclose(mean[:, y, x].numpy(), v)
            np.testing.assert_allclose(unit[:, y, x].numpy(), v / np.linalg.norm(v))
            for got, m in zip(small, maps):
                assert got[y, x].item() == pytest.approx(m[win].mean())
            assert counts[y, x] == maps[0][win].size
    up = upsample_labels(torch.arange(6).view(3, 2), (10, 7), 4).numpy()
    assert all(up[y, x] == (y // 4) * 2 + x // 4 for y in range(10) for x in range(7))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        upsample_labels(torch.zeros(2, 2), (10, 7), 4)


def test_window_statistics_equal_full_resolution_statistics():
    rng = np.random.default_rng(6)
    size, factor = (23, 30), 4
    labels = torch.from_numpy(rng.integers(0, 5, size=(6, 8)))
    e = torch.from_numpy(rng.normal(size=(4, *size)))
    _, *_, mean = downsample_outputs(e, *(torch.ones(size, dtype=torch.float64),) * 3, factor=factor)
    got = segment_statistics(labels, mean, 6, pixel_count=window_pixel_counts(size, factor), factor=factor, size=size)
    want = segment_statistics(upsample_labels(labels, size, factor), e, 6)
    for g, w_ in zip(got, want):
        torch.testing.assert_close(g, w_)


def test_affine_log_kernel_equals_instance_kernel():
    rng = np.random.default_rng(7)
    e = F.normalize(torch.from_numpy(rng.normal(size=(D, 50))), dim=0)
    rho = torch.from_numpy(rng.random((2, 50)) * 3)
    mu = torch.from_numpy(rng.normal(size=(6, D)))
    rho_l, sig, sig_sp = (torch.from_numpy(x)
                          for x in (rng.random((6, 2)) * 3, 0.2 + rng.random(6), 0.3 + rng.random(6)))
    log_phi = kernel_weights(mu, rho_l, sig, sig_sp) @ kernel_features(e, rho)
    torch.testing.assert_close(log_phi.exp(), instance_kernel(e, rho, mu, rho_l, sig, sig_sp))


def test_instance_masks_brute_force_and_chunking(monkeypatch):
    rng = np.random.default_rng(8)
    e = F.normalize(torch.from_numpy(rng.normal(size=(D, 300))), dim=0)
    rho = torch.from_numpy(rng.random((2, 300)))
    seeds = e[:, :5].T.clone()
    rho_l = rho[:, :5].T.clone()
    sig, sig_sp = torch.full((5,), 0.6, dtype=torch.float64), torch.full((5,), 0.4, dtype=torch.float64)
    phi = instance_kernel(e, rho, seeds, rho_l, sig, sig_sp).numpy()           # 5 x 300
    want = np.where(phi.max(0) > 0.5, phi.argmax(0), -1)
    assert 0 < (want >= 0).sum() < 300
    np.testing.assert_array_equal(instance_masks(e, rho, seeds, rho_l, sig, sig_sp, 0.5).numpy(), want)
    monkeypatch.setattr(instances_module, "_MAX_KERNEL_ELEMENTS", 37)                # 7 pixels per block
    np.testing.assert_array_equal(instance_masks(e, rho, seeds, rho_l, sig, sig_sp, 0.5).numpy(), want)


def test_result_moves_between_devices_and_to_list():
    scene = Scene(40, 64)
    scene.add_instance(slice(10, 30), slice(8, 32), "car", 0, score=0.9)
    res = scene.decode().to("cpu")
    items = res.to_list()
    assert [d["id"] for d in items] == res.ids.tolist()
    assert all(isinstance(d["score"], float) and len(d["embedding"]) == D for d in items)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    scene = _street_scene(126, 250)
    for f in (1, 4):
        cfg = dataclasses.replace(CFG, fast_downsample=f)
        cpu = scene.decode(cfg)
        args = [t.float().cuda() for t in (scene.embedding, scene.sigma, scene.sigma_spatial, scene.seed[None],
                                           CLASS_MEANS, torch.full((K,), CLASS_SIGMA))]
        gpu = decode_panoptic(*args, CLASSES, cfg, COORD_SCALE)
        assert gpu.panoptic.is_cuda
        np.testing.assert_array_equal(gpu.panoptic.cpu().numpy(), cpu.panoptic.numpy())
        g = gpu.to("cpu")
        assert g.ids.tolist() == cpu.ids.tolist() and g.areas.tolist() == cpu.areas.tolist()
        assert g.boxes.tolist() == cpu.boxes.tolist()


def test_split_embedding_variant_decodes_semantics_from_first_half_and_instances_from_second():
    """Table-6 split space: ψ (eq. 9) reads the first D/2 channels with the class means, Φ (eq. 8) the last D/2.

    Constructed maps: the left and right halves of the image differ only in the semantic half of the embedding
    (two stuff classes); the instance half is constant. The decoded semantics must follow the first half.
    """
    import torch.nn.functional as F

    from hle_core.config import ClassInfo, ClassTable, DecoderConfig
    from hle_core.decoding import decode_batch, decoder_inputs
    from hle_core.kernels import class_logits

    classes = ClassTable((ClassInfo(7, "road", False), ClassInfo(23, "sky", False), ClassInfo(26, "car", True)))
    h, w = 16, 32
    sem = torch.zeros(4, h, w)
    sem[0, :, : w // 2] = 1.0                      # left: class 0 direction
    sem[1, :, w // 2:] = 1.0                       # right: class 1 direction
    ins = torch.zeros(4, h, w)
    ins[2] = 1.0
    e = torch.cat((sem, ins)) / 2 ** 0.5           # (8, H, W), each half unit norm / sqrt(2) as HLENet emits
    means = torch.zeros(3, 8)
    means[0, 0] = means[1, 1] = means[2, 3] = 1.0  # semantic means live in the first half (HLENet split init)
    params = {"class_means": means, "class_sigma": torch.full((3,), 0.3)}
    maps = {"embedding": e[None], "sigma": torch.full((1, 1, h, w), 0.5),
            "sigma_spatial": torch.full((1, 1, h, w), 0.5), "seed": torch.zeros(1, 1, h, w)}
    out, p = decoder_inputs(maps, params, split_embedding=True)
    assert torch.allclose(out["embedding"][0], F.normalize(ins, dim=0))
    assert torch.allclose(out["semantic_logits"],
                          class_logits(F.normalize(e[None, :4], dim=1), F.normalize(means[:, :4], dim=1),
                                       params["class_sigma"]))
    cfg = DecoderConfig(min_stuff_area=1, min_instance_area=1, stuff_threshold=0.1)
    res = decode_batch(maps, params, classes, cfg, coord_scale=32.0, split_embedding=True)[0]
    assert (res.panoptic[:, : w // 2] == 7).all() and (res.panoptic[:, w // 2:] == 23).all()
    unchanged, _ = decoder_inputs(maps, params, split_embedding=False)
    assert unchanged["embedding"] is maps["embedding"] and "semantic_logits" not in unchanged


# ---------------------------------------------------------------------------------------------------
# full decode at bounded cost (issue 15): coarse cells, full-resolution refinement at borders
def test_refined_full_decode_equals_the_exact_decoder_on_a_street_scene():
    assert COARSE_FACTOR > 1
    scene = _street_scene(126, 250, scale=2)                          # not multiples of 4: partial cells
    scene.add_stuff(slice(10, 12), slice(20, 240), "sidewalk")         # a 2-px strip, thinner than a cell
    scene.add_instance(slice(200, 240), slice(300, 303), "person", direction=3, score=0.97, seed_radius=2.0)
    exact = scene.decode(coarse_factor=1)
    refined = scene.decode(exact_max_pixels=0)                         # coarse + refinement, whatever the size
    np.testing.assert_array_equal(refined.panoptic.numpy(), exact.panoptic.numpy())
    np.testing.assert_array_equal(refined.panoptic.numpy(), scene.expected_panoptic())
    np.testing.assert_array_equal(refined.semantic.numpy(), exact.semantic.numpy())
    for name in ("ids", "category_ids", "is_thing", "areas", "boxes"):
        assert torch.equal(getattr(refined, name), getattr(exact, name)), name
    torch.testing.assert_close(refined.scores, exact.scores)
    torch.testing.assert_close(refined.embeddings, exact.embeddings)
    _check_consistency(refined, scene.embedding)
    with pytest.raises(ValueError, match="coarse_factor"):
        scene.decode(coarse_factor=0)


def test_small_maps_with_few_seeds_take_the_exact_path(monkeypatch):
    """Default full decode: at most exact_max_pixels pixels and EXACT_MAX_SEEDS kept seeds → the exact decoder
    (no coarse cells at all); one pixel over the limit → the bounded path."""
    scene = _street_scene(126, 250, scale=2)
    n = scene.embedding.shape[1] * scene.embedding.shape[2]
    calls = []
    real = panoptic_module.label_segments_refined
    monkeypatch.setattr(panoptic_module, "label_segments_refined",
                        lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    auto, exact = scene.decode(exact_max_pixels=n), scene.decode(coarse_factor=1)
    assert calls == []
    for name in ("panoptic", "semantic", "ids", "category_ids", "is_thing", "areas", "boxes"):
        assert torch.equal(getattr(auto, name), getattr(exact, name)), name
    assert auto.num_instances >= 3
    bounded = scene.decode(exact_max_pixels=n - 1)
    assert len(calls) == 1
    np.testing.assert_array_equal(bounded.panoptic.numpy(), exact.panoptic.numpy())
    # per-pixel multiply-adds: the exact path's worst case stays within the bounded path's (max_seeds = 256, f = 4)
    bounded_worst = (K * D + 256 * (D + 4)) / COARSE_FACTOR ** 2 + K * D + refine_module._ALL_SEEDS * (D + 4)
    assert EXACT_MAX_PIXELS >= 256 * 512 and K * D + EXACT_MAX_SEEDS * (D + 4) <= bounded_worst


def test_maps_whose_cells_are_mostly_mixed_take_the_exact_path(monkeypatch):
    """A map above exact_max_pixels goes to the bounded path, unless more than REFINED_FRACTION_FOR_EXACT of its
    cells would be re-decided pixel by pixel from the start (mixed cells: embeddings that vary within a cell, as on
    a real camera's frames): then the bounded path stops after one pass over the cells and the exact decoder runs,
    while few seeds are kept. Noise on the embeddings mixes the cells."""
    scene = _street_scene(126, 250, scale=2)
    n = scene.embedding.shape[1] * scene.embedding.shape[2]
    exact = scene.decode(coarse_factor=1)
    returned = []
    real = panoptic_module.label_segments_refined
    monkeypatch.setattr(panoptic_module, "label_segments_refined",
                        lambda *a, **kw: returned.append(real(*a, **kw)) or returned[-1])
    clean = scene.decode(exact_max_pixels=n - 1)                       # too big for the small-map rule
    assert [type(r).__name__ for r in returned] == ["RefinedLabels"]  # few mixed cells: cells + borders
    np.testing.assert_array_equal(clean.panoptic.numpy(), exact.panoptic.numpy())

    gen = torch.Generator().manual_seed(0)
    scene.embedding = F.normalize(scene.embedding + 0.12 * torch.randn(scene.embedding.shape, generator=gen,
                                                                        dtype=scene.embedding.dtype), dim=0)
    exact = scene.decode(coarse_factor=1)
    returned.clear()
    noisy = scene.decode(exact_max_pixels=n - 1)
    assert returned == [None]                                          # stopped after the first pass: exact
    for name in ("panoptic", "semantic", "ids", "areas", "boxes"):
        assert torch.equal(getattr(noisy, name), getattr(exact, name)), name
    returned.clear()
    scene.decode(exact_max_pixels=0)                                   # 0: always bounded, no early stop
    assert [type(r).__name__ for r in returned] == ["RefinedLabels"]


def test_refined_decode_keeps_instance_borders_exact_between_touching_instances():
    scene = Scene(64, 96)
    scene.add_instance(slice(10, 50), slice(5, 47), "car", 0, score=0.9, seed_radius=4.0)
    scene.add_instance(slice(10, 50), slice(47, 90), "car", 2, score=0.8, seed_radius=4.0)   # border inside a cell
    res = scene.decode(coarse_factor=8, exact_max_pixels=0)
    np.testing.assert_array_equal(res.panoptic.numpy(), scene.expected_panoptic())
    _check_consistency(res, scene.embedding)


def test_worst_case_work_is_bounded_by_cells_not_pixels(monkeypatch):
    """max_seeds seeds all kept: Φ over all seeds only ever sees cells; pixels see at most 9 candidates. The map
    is small enough for the exact path, but more than EXACT_MAX_SEEDS seeds survive: the bounded path decodes."""
    h, w, f = 96, 128, COARSE_FACTOR
    scene = Scene(h, w)
    n = 0
    for y in range(0, h - 8, 8):                                       # 11 x 16 = 176 separate instances
        for x in range(0, w, 8):
            scene.add_instance(slice(y, y + 8), slice(x, x + 8), "person", direction=n % 6,
                               score=0.6 + 0.3 * ((n * 7) % 11) / 11, seed_radius=1.5)
            n += 1
    scene.sigma_spatial.fill_(0.1)                                     # 6.4 px: an instance's pixels, not 48 px away
    cfg = dataclasses.replace(CFG, max_seeds=n, min_instance_area=0)
    seen = {"cells": [], "pixels": []}
    real_masks, real_nbh = refine_module.instance_masks, refine_module.neighbourhood_masks
    monkeypatch.setattr(refine_module, "instance_masks",
                        lambda e, *a, **k: seen["cells"].append((e.shape[1], a[1].shape[0])) or real_masks(e, *a, **k))
    monkeypatch.setattr(refine_module, "neighbourhood_masks",
                        lambda oc, ci, e, *a: seen["pixels"].append(e.shape[1]) or real_nbh(oc, ci, e, *a))
    res = scene.decode(cfg)
    assert res.num_instances == n                                       # every seed kept and decoded
    (cells, seeds), = seen["cells"]
    assert seeds == n and cells <= -(-h // f) * -(-w // f)              # S x cells, never S x pixels
    assert seen["pixels"][0] <= h * w
    np.testing.assert_array_equal(res.panoptic.numpy(), scene.decode(cfg, coarse_factor=1).panoptic.numpy())


@pytest.mark.parametrize("all_seeds", [32, 0])
def test_neighbourhood_masks_equal_brute_force_over_the_nine_cells(monkeypatch, all_seeds):
    monkeypatch.setattr(refine_module, "_ALL_SEEDS", all_seeds)        # 0: the per-candidate gather path
    monkeypatch.setattr(refine_module, "_REFINE_BLOCK", 13)
    rng = np.random.default_rng(3)
    hc, wc, s, p = 5, 7, 6, 200
    owners = torch.from_numpy(rng.integers(-1, s, (hc, wc)))
    cells = torch.from_numpy(rng.integers(0, hc * wc, p))
    e = F.normalize(torch.from_numpy(rng.normal(size=(D, p))), dim=0)
    rho = torch.from_numpy(rng.random((2, p)))
    seeds, rho_l = F.normalize(torch.from_numpy(rng.normal(size=(s, D))), dim=1), torch.from_numpy(rng.random((s, 2)))
    sig, sig_sp = torch.full((s,), 0.7, dtype=torch.float64), torch.full((s,), 0.5, dtype=torch.float64)
    phi = instance_kernel(e, rho, seeds, rho_l, sig, sig_sp).numpy()    # S x P
    want = np.full(p, -1)
    if all_seeds:                                                      # few seeds: every seed is a candidate
        want = instance_masks(e, rho, seeds, rho_l, sig, sig_sp, 0.4).numpy()
    for i, c in enumerate(cells.tolist() if not all_seeds else []):
        cy, cx = divmod(c, wc)
        cand = {int(owners[y, x]) for y in range(max(cy - 1, 0), min(cy + 2, hc))
                for x in range(max(cx - 1, 0), min(cx + 2, wc))} - {-1}
        if cand:
            best = max(cand, key=lambda j: phi[j, i])
            want[i] = best if phi[best, i] > 0.4 else -1
    got = neighbourhood_masks(owners, cells, e, rho, kernel_weights(seeds, rho_l, sig, sig_sp), 0.4)
    assert 0 < (want >= 0).sum() < p
    np.testing.assert_array_equal(got.numpy(), want)


def test_border_cells_and_cell_pixels_oracles():
    labels = torch.zeros(6, 7, dtype=torch.long)
    labels[2:4, 3:5] = 5
    want = scipy.ndimage.maximum_filter(labels.numpy(), 3, mode="nearest") != \
        scipy.ndimage.minimum_filter(labels.numpy(), 3, mode="nearest")
    np.testing.assert_array_equal(border_cells(labels).numpy(), want)
    cells = torch.zeros(3, 4, dtype=torch.bool)
    cells[0, 0] = cells[2, 3] = True
    pix, cell, ys, xs = cell_pixels(cells, 4, (10, 14))                   # last row / column partial
    got = sorted(zip(ys.tolist(), xs.tolist()))
    want = sorted([(y, x) for y in range(4) for x in range(4)] + [(y, x) for y in range(8, 10) for x in range(12, 14)])
    assert got == want
    assert torch.equal(pix, ys * 14 + xs) and torch.equal(cell, (ys // 4) * 4 + xs // 4)


def test_refined_decode_with_separate_semantic_logits_equals_the_exact_decoder():
    scene = _street_scene(126, 250, scale=2)
    e = scene.embedding
    logits = 1.5 * class_logits(e.reshape(D, -1), CLASS_MEANS, torch.full((K,), CLASS_SIGMA, dtype=torch.float64))
    logits = logits.reshape(K, *e.shape[1:])                            # Table-6 branch: replaces eq. 9's logits
    exact = scene.decode(semantic_logits=logits, coarse_factor=1)
    refined = scene.decode(semantic_logits=logits, exact_max_pixels=0)
    assert torch.equal(refined.panoptic, exact.panoptic) and torch.equal(refined.ids, exact.ids)
    torch.testing.assert_close(refined.scores, exact.scores)


def _sorted_pixels_and_seeds(rng, n=3000, s=12):
    """Pixels scanned row-major over a 60 x 50 map (ρ in map units / 16) and seeds of very different reach."""
    h, w = 60, 50
    ys, xs = np.divmod(np.sort(rng.choice(h * w, n, replace=False)), w)
    rho = torch.from_numpy(np.stack((xs + 0.5, ys + 0.5)) / 16.0)
    e = F.normalize(torch.from_numpy(rng.normal(size=(D, n))), dim=0)
    pick = rng.choice(n, s, replace=False)
    seeds = F.normalize(e[:, pick].T + 0.1 * torch.from_numpy(rng.normal(size=(s, D))), dim=1)
    rho_l = rho[:, pick].T.clone()
    sig = torch.from_numpy(0.5 + rng.random(s))
    sig_sp = torch.from_numpy(np.r_[0.02, 5.0, 0.05 + 0.4 * rng.random(s - 2)])   # a pinpoint and a map-wide seed
    return e, rho, seeds, rho_l, sig, sig_sp


@pytest.mark.parametrize("threshold", [0.5, 0.05, 0.0])
def test_instance_masks_spatial_pruning_changes_nothing(monkeypatch, threshold):
    """rows_sorted: each block of rows sees only the seeds that can reach it; the owners are those of the
    brute force over all seeds (t = 0: Φ > 0 everywhere, nothing is pruned)."""
    e, rho, seeds, rho_l, sig, sig_sp = _sorted_pixels_and_seeds(np.random.default_rng(11))
    phi = instance_kernel(e, rho, seeds, rho_l, sig, sig_sp).numpy()           # S x N
    want = np.where(phi.max(0) > threshold, phi.argmax(0), -1)
    seen = []
    real = instances_module._block_owners
    monkeypatch.setattr(instances_module, "_block_owners",
                        lambda e_, r_, w_, idx, t_: seen.append(w_.shape[0] if idx is None else idx.numel())
                        or real(e_, r_, w_, idx, t_))
    monkeypatch.setattr(instances_module, "_MIN_ELEMENTS_TO_PRUNE", 0)
    monkeypatch.setattr(instances_module, "_PRUNE_BLOCKS", 10)
    got = instance_masks(e, rho, seeds, rho_l, sig, sig_sp, threshold, rows_sorted=True).numpy()
    np.testing.assert_array_equal(got, want)
    assert (want >= 0).any() and (threshold < 0.5 or (want == -1).any())
    if threshold > 0:
        assert len(seen) == 10
        assert min(seen) < seeds.shape[0] and max(seen) <= seeds.shape[0]    # some blocks saw fewer seeds
        assert min(seen) >= 1                                                 # the map-wide seed reaches all
    else:
        assert seen == [seeds.shape[0]]                                       # one block, every seed


def test_seed_reach_bounds_the_kernel():
    """Outside its radius (margin 0) a seed's Φ is at most t even for a pixel with the seed's own embedding;
    just inside it, that pixel's Φ exceeds t: the radius is tight."""
    sig_sp, t = torch.tensor([0.05, 0.3], dtype=torch.float64), 0.4
    r = instances_module.seed_reach(sig_sp, t)
    mu = F.normalize(torch.ones(2, D, dtype=torch.float64), dim=1)
    for scale, above in ((1.001, False), (0.999, True)):
        rho = torch.stack((r * scale, torch.zeros(2, dtype=torch.float64)))              # 2 x 2: one pixel per seed
        phi = instance_kernel(mu.T, rho, mu, torch.zeros(2, 2, dtype=torch.float64), torch.ones(2,
                              dtype=torch.float64), sig_sp).diagonal()
        assert bool((phi > t).all()) is above and bool((phi <= t).all()) is not above
    assert torch.isinf(instances_module.seed_reach(sig_sp, 0.0)).all()


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_window_mean_equals_avg_pool(factor):
    x = torch.from_numpy(np.random.default_rng(factor).normal(size=(5, 6 * factor, 7 * factor)))
    torch.testing.assert_close(window_mean(x, factor), F.avg_pool2d(x, factor, factor))
    with pytest.raises(ValueError, match="multiple of"):
        window_mean(x[:, 1:], factor)


@pytest.mark.parametrize("shape", [(37,), (9, 35), (4, 16)])
def test_lane_sums_equal_plain_sums(shape):
    """Per-segment counts, weighted counts and sums through interleaved lanes equal bincount / index_add_ over
    the segments themselves (runs of one segment, lengths not multiples of LANES)."""
    rng = np.random.default_rng(sum(shape))
    seg = torch.from_numpy(np.repeat(rng.integers(0, 5, size=-(-int(np.prod(shape)) // 3)), 3)[:int(np.prod(shape))])
    seg = seg.view(shape)
    flat, m = seg.flatten(), 7
    weights = torch.from_numpy(rng.random(flat.numel()))
    values = torch.from_numpy(rng.normal(size=(3, flat.numel())))
    keys = lane_keys(seg)
    assert keys.shape == flat.shape and torch.equal(keys // LANES, flat)
    assert torch.equal(lane_bincount(keys, m), torch.bincount(flat, minlength=m))
    torch.testing.assert_close(lane_bincount(keys, m, weights), torch.bincount(flat, weights, minlength=m))
    torch.testing.assert_close(lane_index_add(keys, values, m), torch.zeros(3, m, dtype=values.dtype)
                               .index_add_(1, flat, values))


def test_indexing_helpers_equal_advanced_indexing():
    table = torch.tensor([5, 7, 9, 11])
    index = torch.tensor([[3, 0], [1, 1]])
    assert torch.equal(lookup(table, index), table[index])
    x = torch.arange(12.0).view(3, 4)
    assert torch.equal(gather_columns(x, torch.tensor([2, 0])), x[:, [2, 0]])
    y = torch.zeros(5, dtype=torch.long)
    assert put(y, torch.tensor([4, 1]), torch.tensor([8, 6])) is y and y.tolist() == [0, 6, 0, 0, 8]


def test_stuff_score_is_the_mean_psi_to_float32_rounding():
    """The score of a stuff segment is the mean ψ of its pixels: over ~480k float32 pixels a running float32 sum
    (``bincount`` with float32 weights) drifts by ~1e-5 of it; the decoder's sum does not."""
    h, w = 600, 800
    gen = torch.Generator().manual_seed(0)
    means = F.normalize(CLASS_MEANS.float(), dim=1)
    e = F.normalize(means[INDEX["road"]].view(D, 1, 1) + 0.3 * torch.randn(D, h, w, generator=gen), dim=0)
    sigma = torch.full((K,), 0.3)
    things = torch.tensor(CLASSES.thing_mask)
    cfg = dataclasses.replace(CFG, stuff_threshold=0.0)
    labels = panoptic_module.label_segments(e, torch.ones(h, w), torch.ones(h, w), torch.zeros(h, w), means, sigma,
                                            things, cfg, coord_scale=256.0)
    semantic, psi = assign_semantics(e.reshape(D, -1), means, sigma)
    road = semantic == INDEX["road"]
    assert 0.5 < road.float().mean() < 1
    slot = labels.segment_map.flatten()[road.nonzero()[0, 0]]
    assert labels.score[slot].item() == pytest.approx(psi[road].double().mean().item(), rel=2e-7, abs=0)
