"""Lovász losses (paper eq. 3-6) against a brute-force Lovász extension of Δ = 1 - IoU."""
from __future__ import annotations

import itertools

import pytest
import torch

from hle_core.losses import (lovasz_binary, lovasz_binary_rows, lovasz_grad, lovasz_hinge, lovasz_hinge_flat,
                             lovasz_softmax, lovasz_softmax_flat)


# ---------------------------------------------------------------------------------------------------------------
# oracle, written from the definitions only
# ---------------------------------------------------------------------------------------------------------------
def jaccard_loss_of_mistakes(mistakes: set[int], gt: list[int]) -> float:
    """Δ(M) = 1 - IoU(prediction, ground truth) when exactly the pixels in M are predicted wrong."""
    truth = {i for i, t in enumerate(gt) if t == 1}
    pred = {i for i, t in enumerate(gt) if (t == 1) != (i in mistakes)}
    union = pred | truth
    if not union:
        return 0.0
    return 1.0 - len(pred & truth) / len(union)


def lovasz_extension(errors: list[float], gt: list[int]) -> float:
    """Lovász extension of Δ at non-negative errors via the threshold integral ∫_0^∞ Δ({i : ξ_i ≥ t}) dt.

    Δ is constant between consecutive distinct error values, so the integral is an exact finite sum; this is
    the piecewise-linear interpolation of Δ and needs no sorting of pixels.
    """
    levels = sorted({e for e in errors if e > 0})
    total, prev = 0.0, 0.0
    for v in levels:
        total += (v - prev) * jaccard_loss_of_mistakes({i for i, e in enumerate(errors) if e >= v}, gt)
        prev = v
    return total


def greedy_prefix_oracle(errors: list[float], gt: list[int]) -> float:
    """Paper eq. 3 + 5 by enumerating sorted prefixes with explicit sets (second, independent form)."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total, prefix = 0.0, set()
    for i in order:
        before = jaccard_loss_of_mistakes(prefix, gt)
        prefix = prefix | {i}
        total += errors[i] * (jaccard_loss_of_mistakes(prefix, gt) - before)
    return total


def hinge_errors(logits: list[float], gt: list[int]) -> list[float]:
    return [max(0.0, 1.0 - z * (2 * t - 1)) for z, t in zip(logits, gt)]


def binary_errors(probs: list[float], gt: list[int]) -> list[float]:
    return [1.0 - p if t == 1 else p for p, t in zip(probs, gt)]      # paper eq. 4


def _random_case(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, generator=gen, dtype=torch.float64) * 1.5, torch.randint(0, 2, (n,), generator=gen)


# ---------------------------------------------------------------------------------------------------------------
def test_oracles_agree_with_each_other():
    gen = torch.Generator().manual_seed(1)
    for n in range(1, 8):
        err = torch.rand(n, generator=gen).tolist()
        gt = torch.randint(0, 2, (n,), generator=gen).tolist()
        assert lovasz_extension(err, gt) == pytest.approx(greedy_prefix_oracle(err, gt), abs=1e-12)


def test_lovasz_grad_is_the_increment_of_the_jaccard_loss_on_prefixes():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 2, (5, 7), generator=gen).double()          # several rows at once
    g = lovasz_grad(rows)
    for r in range(rows.shape[0]):
        gt = rows[r].long().tolist()
        expected = [jaccard_loss_of_mistakes(set(range(i + 1)), gt) - jaccard_loss_of_mistakes(set(range(i)), gt)
                    for i in range(len(gt))]
        torch.testing.assert_close(g[r], torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_hinge_flat_equals_lovasz_extension(n):
    gen = torch.Generator().manual_seed(10 + n)
    for _ in range(20):
        logits, labels = _random_case(gen, n)
        expected = lovasz_extension(hinge_errors(logits.tolist(), labels.tolist()), labels.tolist())
        assert lovasz_hinge_flat(logits, labels).item() == pytest.approx(expected, abs=1e-12)


def test_hinge_with_tied_errors_equals_lovasz_extension():
    logits = torch.tensor([0.5, -0.5, 0.5, -0.5, 2.0, 0.0], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 1, 1, 0])
    expected = lovasz_extension(hinge_errors(logits.tolist(), labels.tolist()), labels.tolist())
    assert lovasz_hinge_flat(logits, labels).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_binary_equals_lovasz_extension_with_eq4_errors(n):
    gen = torch.Generator().manual_seed(20 + n)
    for _ in range(20):
        probs = torch.rand(n, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 2, (n,), generator=gen)
        expected = lovasz_extension(binary_errors(probs.tolist(), labels.tolist()), labels.tolist())
        assert lovasz_binary(probs, labels).item() == pytest.approx(expected, abs=1e-12)


def test_binary_rows_equal_oracle_per_row_with_valid_mask():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(6, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (6, 8), generator=gen).bool()
    valid = torch.rand(6, 8, generator=gen) > 0.3
    valid[5] = False                                                    # a row with nothing valid
    got = lovasz_binary_rows(probs, labels, valid)
    assert got.shape == (6,)
    for r in range(6):
        keep = valid[r].nonzero().flatten().tolist()
        p = [probs[r, i].item() for i in keep]
        t = [int(labels[r, i]) for i in keep]
        assert got[r].item() == pytest.approx(lovasz_extension(binary_errors(p, t), t), abs=1e-12)


def test_binary_rows_take_leading_batch_dims():
    gen = torch.Generator().manual_seed(4)
    probs = torch.rand(2, 3, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (2, 3, 5), generator=gen)
    got = lovasz_binary_rows(probs, labels)
    assert got.shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):
        assert got[i, j].item() == pytest.approx(lovasz_binary(probs[i, j], labels[i, j]).item(), abs=1e-12)


def _softmax_oracle(probas: torch.Tensor, labels: torch.Tensor, classes) -> float:
    """eq. 6 by loops: average over the chosen classes of the oracle on |1[t=c] - p_c|."""
    p, t = probas.tolist(), labels.tolist()
    if classes == "present":
        classes = sorted(set(t))
    elif classes == "all":
        classes = list(range(probas.shape[1]))
    losses = []
    for c in classes:
        fg = [1 if y == c else 0 for y in t]
        losses.append(lovasz_extension([abs(f - row[c]) for f, row in zip(fg, p)], fg))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("classes", ["present", "all", [0, 2]])
def test_softmax_flat_is_class_average_of_oracle(classes):
    gen = torch.Generator().manual_seed(5)
    for n in (1, 4, 8):
        probas = torch.softmax(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=1)
        labels = torch.randint(0, 3, (n,), generator=gen)
        expected = _softmax_oracle(probas, labels, classes)
        assert lovasz_softmax_flat(probas, labels, classes).item() == pytest.approx(expected, abs=1e-12)


def test_softmax_ignore_and_per_image():
    gen = torch.Generator().manual_seed(6)
    probas = torch.softmax(torch.randn(2, 3, 2, 3, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (2, 2, 3), generator=gen)
    labels[0, 0, :2] = 255
    labels[1, 1, 2] = 255
    flat_p = probas.permute(0, 2, 3, 1).reshape(-1, 3)
    flat_t = labels.reshape(-1)
    keep = flat_t != 255
    expected_flat = _softmax_oracle(flat_p[keep], flat_t[keep], "present")
    assert lovasz_softmax(probas, labels, ignore=255).item() == pytest.approx(expected_flat, abs=1e-12)

    per_img = []
    for b in range(2):
        p, t = probas[b].permute(1, 2, 0).reshape(-1, 3), labels[b].reshape(-1)
        per_img.append(_softmax_oracle(p[t != 255], t[t != 255], "present"))
    got = lovasz_softmax(probas, labels, per_image=True, ignore=255).item()
    assert got == pytest.approx(sum(per_img) / 2, abs=1e-12)
    assert got != pytest.approx(expected_flat, abs=1e-6)                 # the two modes really differ here


def test_hinge_per_image_flat_and_ignore():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 2, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (3, 2, 3), generator=gen)
    labels[1, 0, 0] = 255
    labels[2] = 255                                                     # an image with everything ignored
    per = []
    for b in range(3):
        z, t = logits[b].reshape(-1), labels[b].reshape(-1)
        z, t = z[t != 255].tolist(), t[t != 255].tolist()
        per.append(lovasz_extension(hinge_errors(z, t), t))
    assert lovasz_hinge(logits, labels, per_image=True, ignore=255).item() == pytest.approx(sum(per) / 3, abs=1e-12)
    z, t = logits.reshape(-1), labels.reshape(-1)
    z, t = z[t != 255].tolist(), t[t != 255].tolist()
    expected = lovasz_extension(hinge_errors(z, t), t)
    assert lovasz_hinge(logits, labels, per_image=False, ignore=255).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fn,args", [
    (lovasz_hinge_flat, (torch.zeros(0, requires_grad=True), torch.zeros(0, dtype=torch.long))),
    (lovasz_hinge, (torch.zeros(0, 4, 4, requires_grad=True), torch.zeros(0, 4, 4, dtype=torch.long))),
    (lovasz_binary, (torch.zeros(0, requires_grad=True), torch.zeros(0, dtype=torch.long))),
    (lovasz_softmax_flat, (torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long))),
    (lovasz_softmax, (torch.zeros(1, 3, 0, 4, requires_grad=True), torch.zeros(1, 0, 4, dtype=torch.long))),
])
def test_empty_input_gives_attached_zero(fn, args):
    loss = fn(*args)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert args[0].grad is not None and args[0].grad.numel() == 0


def test_all_ignored_softmax_is_attached_zero():
    probas = torch.softmax(torch.randn(1, 3, 2, 2), 1).requires_grad_()
    loss = lovasz_softmax(probas, torch.full((1, 2, 2), 255), ignore=255)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(probas.grad, torch.zeros_like(probas))


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 2, (2, 2, 3), generator=gen)
    assert torch.autograd.gradcheck(lambda z: lovasz_hinge(z, labels), (logits,))
    probs = torch.rand(3, 5, generator=gen, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    rlab = torch.randint(0, 2, (3, 5), generator=gen)
    valid = torch.rand(3, 5, generator=gen) > 0.2
    assert torch.autograd.gradcheck(lambda p: lovasz_binary_rows(p, rlab, valid), (probs,))
    raw = torch.randn(1, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    slab = torch.randint(0, 3, (1, 2, 2), generator=gen)
    assert torch.autograd.gradcheck(lambda r: lovasz_softmax(torch.softmax(r, 1), slab), (raw,))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        lovasz_binary(torch.rand(3), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="0 or 1"):
        lovasz_hinge_flat(torch.rand(3), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        lovasz_softmax(torch.rand(3, 2, 2), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="0..2"):
        lovasz_softmax_flat(torch.rand(4, 3), torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="present"):
        lovasz_softmax_flat(torch.rand(4, 3), torch.tensor([0, 1, 1, 2]), classes="some")
    with pytest.raises(TypeError, match="bool"):
        lovasz_binary_rows(torch.rand(2, 3), torch.ones(2, 3), torch.ones(2, 3))
