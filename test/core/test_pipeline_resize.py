"""Fitting camera frames to a fixed network input: ``Pipeline(resize="letterbox" | "stretch")``.

Oracle: a fake backend whose outputs are a function of the network input's colours: white → car, any other
image colour → road, exact zeros (the mean-colour padding) → person, with seeds on a sparse grid of thing
pixels. Decoding its uncropped output therefore yields a bogus person in the padding; the letterboxed
pipeline must not, and must report the car where it is in the original image.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hle_core.config import HLEConfig
from hle_core.decoding import decode_panoptic
from hle_core.model import OUTPUT_NAMES
from hle_core.pipeline import RESIZE_MODES, Pipeline, letterbox_size
from hle_core.runtime.base import Backend

ROAD, PERSON, CAR = 0, 5, 6                     # class indices of the street table
ROAD_ID, PERSON_ID, CAR_ID = 7, 24, 26          # their category ids
INPUT = (256, 512)


class ColourBackend(Backend):
    """Outputs from colours; records every batch it is given."""

    name = "colour"

    def __init__(self) -> None:
        self.config = HLEConfig()
        self.device, self.dtype = torch.device("cpu"), torch.float32
        d, k = self.config.model.embedding_dim, len(self.config.classes)
        self.decode_params = {"class_means": torch.eye(k, d), "class_sigma": torch.full((k,), 0.2)}
        self.batches: list[torch.Tensor] = []

    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batches.append(batch.clone())
        cls = torch.full(batch.shape[-2:], ROAD)
        cls[batch[0, 0] > 0] = CAR                                           # white (black is < 0)
        cls[(batch[0] == 0).all(0)] = PERSON                                 # padding: exactly the mean colour
        embedding = self.decode_params["class_means"][cls].permute(2, 0, 1)[None]
        h, w = cls.shape
        grid = ((torch.arange(h) % 8 == 4)[:, None] & (torch.arange(w) % 8 == 4)[None, :])
        seed = ((cls == CAR) | (cls == PERSON)) & grid
        ones = torch.ones(1, 1, h, w)
        return {"embedding": embedding, "sigma": 0.5 * ones, "sigma_spatial": 10.0 * ones,
                "seed": 0.9 * seed[None, None].float()}


def camera_frame(height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Black frame with a white car; returns it and the car's inclusive box x0, y0, x1, y1."""
    image = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = width // 3, height // 4, width // 2 - 1, height // 2 - 1
    image[y0:y1 + 1, x0:x1 + 1] = 255
    return image, (x0, y0, x1, y1)


def bbox_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


@pytest.mark.parametrize("image_size,valid", [((480, 640), (256, 341)), ((720, 1280), (256, 455)),
                                              ((256, 512), (256, 512)), ((100, 2000), (26, 512)),
                                              ((1000, 100), (256, 26)), ((128, 128), (256, 256))])
def test_letterbox_size_keeps_the_aspect_ratio_inside_the_input(image_size, valid):
    assert letterbox_size(image_size, INPUT) == valid


def test_the_fake_backend_does_put_a_person_in_uncropped_padding():
    """The oracle can fail: decoding the whole padded network output yields the bogus person."""
    backend = ColourBackend()
    batch, (h, w) = Pipeline(backend, input_size=INPUT).preprocess(camera_frame(480, 640)[0])
    out = {k: v[0] for k, v in backend.infer(batch).items()}
    res = decode_panoptic(out["embedding"], out["sigma"], out["sigma_spatial"], out["seed"],
                          backend.decode_params["class_means"], backend.decode_params["class_sigma"],
                          backend.config.classes, backend.config.decoder, backend.config.model.coord_scale)
    assert w < INPUT[1] and PERSON_ID in res.category_ids.tolist()


@pytest.mark.parametrize("height,width", [(480, 640), (720, 1280)])
def test_letterbox_runs_the_input_size_and_answers_in_original_pixels(height, width):
    backend = ColourBackend()
    pipe = Pipeline(backend, input_size=INPUT)
    image, car_box = camera_frame(height, width)
    res = pipe.process(image)

    # (a) the network sees exactly the input size: the image top-left at one scale, padding exactly zero
    (batch,) = backend.batches
    h, w = letterbox_size((height, width), INPUT)
    assert tuple(batch.shape) == (1, 3, *INPUT)
    assert (batch[0, :, :, w:] == 0).all() and (batch[0, :, h:, :] == 0).all()
    assert (batch[0, :, :h, :w] != 0).any(0).all()
    # (b) the panoptic map has the image's size; (d) the padding yields no segment
    assert res.panoptic.shape == (height, width)
    assert sorted(res.category_ids.tolist()) == [ROAD_ID, CAR_ID]
    assert set(np.unique(res.panoptic).tolist()) == {ROAD_ID, CAR_ID * 1000}
    # (c) areas and boxes are those of the original-resolution map, and the car is where it was drawn
    for sid, area, box in zip(res.ids, res.areas, res.boxes):
        mask = res.panoptic == sid
        assert area == mask.sum() and box.tolist() == bbox_of(mask)
    car = res.boxes[res.category_ids.tolist().index(CAR_ID)]
    tol = math.ceil(height / h) + 1                                         # one network pixel, plus rounding
    np.testing.assert_allclose(car, car_box, atol=tol, rtol=0)


def test_stretch_fills_the_input_and_still_answers_in_original_pixels():
    backend = ColourBackend()
    image, car_box = camera_frame(480, 640)
    res = Pipeline(backend, input_size=INPUT, resize="stretch").process(image)
    (batch,) = backend.batches
    assert tuple(batch.shape) == (1, 3, *INPUT) and not (batch[0] == 0).all(0).any()   # no padding
    assert res.panoptic.shape == (480, 640) and sorted(res.category_ids.tolist()) == [ROAD_ID, CAR_ID]
    car = res.boxes[res.category_ids.tolist().index(CAR_ID)]
    np.testing.assert_allclose(car, car_box, atol=math.ceil(480 / 256) + 1, rtol=0)


def test_letterbox_is_the_default_and_unknown_modes_are_refused():
    assert Pipeline(ColourBackend(), input_size=INPUT).resize == "letterbox" == RESIZE_MODES[0]
    with pytest.raises(ValueError, match="resize must be one of"):
        Pipeline(ColourBackend(), input_size=INPUT, resize="crop")


def test_outputs_are_what_the_pipeline_reads():
    assert set(ColourBackend().infer(torch.zeros(1, 3, 32, 32))) == set(OUTPUT_NAMES)


# --- the model's test resolution (hle.model.test_scale): images run at their own size, times the scale ---------
def scaled_backend(scale: float) -> ColourBackend:
    backend = ColourBackend()
    backend.config = backend.config.override({"model": {"test_scale": scale}})
    return backend


@pytest.mark.parametrize("scale,image_size,network", [(1.5, (256, 512), (384, 768)), (1.5, (100, 150), (160, 256)),
                                                      (0.5, (480, 640), (256, 320)), (1.0, (100, 150), (128, 160))])
def test_test_scale_resizes_the_image_before_the_network_and_answers_in_its_pixels(scale, image_size, network):
    height, width = image_size
    backend = scaled_backend(scale)
    pipe = Pipeline(backend)
    image, car_box = camera_frame(height, width)
    res = pipe.process(image)
    (batch,) = backend.batches
    h, w = round(height * scale), round(width * scale)
    assert tuple(batch.shape) == (1, 3, *network)                             # scaled, padded to multiples of 32
    assert (batch[0, :, :h, :w] != 0).any(0).all() and (batch[0, :, h:, :] == 0).all()
    assert (batch[0, :, :, w:] == 0).all()
    assert res.panoptic.shape == (height, width)                              # answered at the image's size
    assert sorted(res.category_ids.tolist()) == [ROAD_ID, CAR_ID]             # padding never yields a segment
    for sid, area, box in zip(res.ids, res.areas, res.boxes):
        mask = res.panoptic == sid
        assert area == mask.sum() and box.tolist() == bbox_of(mask)
    car = res.boxes[res.category_ids.tolist().index(CAR_ID)]
    np.testing.assert_allclose(car, car_box, atol=math.ceil(1 / scale) + 1, rtol=0)
    assert pipe.fit == scale


def test_a_fixed_input_size_overrides_the_test_scale():
    backend = scaled_backend(1.5)
    pipe = Pipeline(backend, input_size=INPUT)
    pipe.process(camera_frame(480, 640)[0])
    assert tuple(backend.batches[0].shape) == (1, 3, *INPUT) and pipe.test_scale == 1.0 and pipe.fit == INPUT


class BatchColourBackend(ColourBackend):
    """:class:`ColourBackend` over every image of a batch."""

    def infer(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [ColourBackend.infer(self, batch[i:i + 1]) for i in range(batch.shape[0])]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def test_flip_at_a_test_scale_averages_the_scaled_maps():
    backend = BatchColourBackend()
    backend.config = backend.config.override({"model": {"test_scale": 1.5}})
    image = camera_frame(100, 150)[0]
    res = Pipeline(backend, flip=True).process(image)
    assert [tuple(b.shape) for b in backend.batches] == [(1, 3, 160, 256)] * 2   # the image and its mirror
    assert res.panoptic.shape == (100, 150) and CAR_ID in res.category_ids.tolist()


# --- areas and boxes of the resized map, counted on the small one ---------------------------------------------
@pytest.mark.parametrize("small,size", [((64, 85), (480, 640)), ((96, 128), (720, 1280)), ((384, 768), (256, 512)),
                                        ((37, 53), (100, 41)), ((5, 7), (5, 7)), ((50, 50), (7, 333))])
def test_resized_areas_and_boxes_equal_those_of_the_resized_map(small, size):
    from hle_core.pipeline import resize_nearest, resized_areas_and_boxes, segment_areas_and_boxes

    gen = torch.Generator().manual_seed(small[0] * 1000 + size[1])
    blocks = torch.randint(0, 6, (max(1, small[0] // 4), max(1, small[1] // 4)), generator=gen)   # blobs
    labels = resize_nearest(blocks.to(torch.int32), small)
    labels[torch.rand(small, generator=gen) < 0.05] = 7                     # and single pixels, which may vanish
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 7, 9], dtype=torch.int64)          # 9 is absent
    want = segment_areas_and_boxes(resize_nearest(labels, size), ids)
    got = resized_areas_and_boxes(labels, ids, size)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[0][-1] == 0 and got[1][-1].tolist() == [0, 0, -1, -1]
    empty = resized_areas_and_boxes(labels, ids[:0], size)
    assert empty[0].shape == (0,) and empty[1].shape == (0, 4)
