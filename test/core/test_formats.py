"""COCO panoptic and Cityscapes readers / writers: round trips, foreign ids, crowd / void, clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from hle_core.config import street_class_table
from hle_core.data.cityscapes import CityscapesPanopticReader, CityscapesReader, CityscapesWriter
from hle_core.data.coco_panoptic import CocoPanopticReader, CocoPanopticWriter, coco_paths
from hle_core.panoptic_io import (PanopticFileNotFoundError, PanopticFormatError, UnknownCategoryError, id_to_rgb,
                                  rgb_to_id)
from hle_core.data.synthetic import SceneGenerator

CLASSES = street_class_table()
SIZE = (64, 128)
CATS = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color)} for c in CLASSES.classes]


def _brute_segments(pan):
    """Oracle: {id: (category, crowd, area, [x, y, w, h])} by direct pixel search."""
    things = {c.id for c in CLASSES.classes if c.isthing}
    out = {}
    for sid in np.unique(pan):
        if sid == 0:
            continue
        ys, xs = np.nonzero(pan == sid)
        cat = int(sid) // 1000 if sid >= 1000 else int(sid)
        out[int(sid)] = (cat, bool(cat in things and sid < 1000), len(ys),
                         (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)))
    return out


def _check_segments(sample):
    oracle = _brute_segments(sample.panoptic)
    got = {s.id: (s.category_id, s.iscrowd, s.area, tuple(s.bbox)) for s in sample.segments}
    assert got == oracle


def _frames(n=2, seed=0):
    gen = SceneGenerator(SIZE, seed=seed)
    return [gen.frame(i) for i in range(n)]


def _write_png_rgb(path, ids):
    """Independent encoder: R + 256 G + 256² B with PIL."""
    ids = ids.astype(np.int64)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def _hand_made_coco(tmp_path, image_id="frankfurt_000000_000294", segments=None, ids=None):
    """A COCO panoptic set written without our writer: arbitrary ids, crowd, a string image id."""
    if ids is None:
        ids = np.zeros((8, 10), np.int64)
        ids[:4] = 5               # road (7)
        ids[4:, :3] = 777         # car instance
        ids[4:, 3:6] = 123456     # car instance
        ids[4:, 6:8] = 99         # car crowd
        ids[4:, 8:] = 3000        # person instance
    if segments is None:
        segments = [{"id": 5, "category_id": 7, "iscrowd": 0}, {"id": 777, "category_id": 26, "iscrowd": 0},
                    {"id": 123456, "category_id": 26, "iscrowd": 0}, {"id": 99, "category_id": 26, "iscrowd": 1},
                    {"id": 3000, "category_id": 24, "iscrowd": 0}]
    _write_png_rgb(tmp_path / "pan" / "a.png", ids)
    img_dir = tmp_path / "img"
    img_dir.mkdir(exist_ok=True)
    Image.fromarray(np.full((*ids.shape, 3), 90, np.uint8)).save(img_dir / "a.jpg.png")
    data = {"images": [{"id": image_id, "file_name": "a.jpg.png", "height": ids.shape[0], "width": ids.shape[1]}],
            "annotations": [{"image_id": image_id, "file_name": "a.png", "segments_info": segments}],
            "categories": CATS}
    (tmp_path / "p.json").write_text(json.dumps(data))
    return ids


def test_rgb_id_encoding_matches_formula():
    rgb = np.array([[[1, 2, 3], [255, 0, 0], [0, 0, 1]]], np.uint8)
    assert rgb_to_id(rgb).tolist() == [[1 + 2 * 256 + 3 * 65536, 255, 65536]]
    ids = np.array([[0, 26003, 256**3 - 1]])
    assert np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    with pytest.raises(ValueError, match="256"):
        id_to_rgb(np.array([[256**3]]))


def test_one_codec_and_one_exception_hierarchy(tmp_path):
    import hle_core.data as data
    import hle_core.evaluation as evaluation
    from hle_core.panoptic_io import read_panoptic_png, write_panoptic_png

    ids = np.array([[0, 1, 256**3 - 1], [65536, 26003, 255]])
    write_panoptic_png(tmp_path / "x.png", ids)
    back = read_panoptic_png(tmp_path / "x.png")
    assert back.dtype == np.uint32 and np.array_equal(back, ids)            # every 24-bit id, no sign
    assert rgb_to_id(id_to_rgb(ids)).dtype == np.uint32
    for name in ("PanopticFormatError", "PanopticFileNotFoundError", "UnknownCategoryError"):
        assert getattr(data, name) is getattr(evaluation, name)
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(evaluation.PanopticFormatError, match=r"p\.json"):   # a data-set error, caught as one
        CocoPanopticReader(tmp_path / "p.json", tmp_path)


def test_coco_round_trip_is_exact(tmp_path):
    frames = _frames()
    with CocoPanopticWriter(*coco_paths(tmp_path, "val"), classes=CLASSES) as w:
        for i, f in enumerate(frames):
            w.add(i + 1, f"{i:04d}", f.image, f.panoptic, f.segments)
    reader = CocoPanopticReader(*coco_paths(tmp_path, "val"), classes=CLASSES)
    assert len(reader) == 2 and reader.image_ids == [1, 2]
    data = json.loads(coco_paths(tmp_path, "val")[0].read_text())
    assert {c["id"] for c in data["categories"]} == set(CLASSES.ids)
    for f, ann in zip(frames, data["annotations"]):   # JSON areas / bboxes agree with the oracle
        oracle = _brute_segments(f.panoptic)
        assert {s["id"]: (s["category_id"], bool(s["iscrowd"]), s["area"], tuple(s["bbox"]))
                for s in ann["segments_info"]} == oracle
    for i, f in enumerate(frames):
        s = reader[i]
        assert s.panoptic.dtype == np.int32 and np.array_equal(s.panoptic, f.panoptic)
        assert np.array_equal(s.image, f.image)           # PNG images are lossless
        _check_segments(s)


def test_coco_foreign_ids_string_image_id_and_crowd(tmp_path):
    ids = _hand_made_coco(tmp_path)
    reader = CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", tmp_path / "img", classes=CLASSES)
    s = reader[0]
    assert s.image_id == "frankfurt_000000_000294" and s.image.shape == (8, 10, 3)
    pan = s.panoptic
    # same partition of the image up to relabelling: a bijection between source and read ids
    pairs = set(zip(ids.ravel().tolist(), pan.ravel().tolist()))
    assert len(pairs) == len(set(ids.ravel().tolist())) == len(set(pan.ravel().tolist()))
    lookup = dict(pairs)
    assert lookup[5] == 7                                   # stuff: the category id
    assert lookup[99] == 26                                 # crowd car: bare category id
    assert {lookup[777] // 1000, lookup[123456] // 1000} == {26} and lookup[777] != lookup[123456]
    assert lookup[3000] // 1000 == 24
    _check_segments(s)
    assert [x.iscrowd for x in s.segments if x.id == 26] == [True]


def test_coco_unknown_category_error_or_ignore(tmp_path):
    segs = [{"id": 5, "category_id": 7, "iscrowd": 0}, {"id": 6, "category_id": 99, "iscrowd": 0}]
    ids = np.array([[5, 5, 6, 6]])
    _hand_made_coco(tmp_path, 3, segs, ids)
    with pytest.raises(UnknownCategoryError, match=r"a\.png.*99"):
        CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", classes=CLASSES)[0]
    s = CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", classes=CLASSES, unknown="ignore")[0]
    assert s.panoptic.tolist() == [[7, 7, 0, 0]]
    # a category map moves data set ids onto the table
    s = CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", classes=CLASSES, category_map={99: 8})[0]
    assert s.panoptic.tolist() == [[7, 7, 8, 8]]


def test_coco_category_disagreeing_with_table(tmp_path):
    _hand_made_coco(tmp_path)
    data = json.loads((tmp_path / "p.json").read_text())
    data["categories"][0]["name"] = "railway"
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(UnknownCategoryError, match="railway"):
        CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", classes=CLASSES)


def test_png_id_missing_from_json_names_file_and_id(tmp_path):
    segs = [{"id": 5, "category_id": 7, "iscrowd": 0}]
    _hand_made_coco(tmp_path, 1, segs, np.array([[5, 5, 42, 0]]))
    with pytest.raises(PanopticFormatError, match=r"a\.png.*\[42\]"):
        CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan")[0]


def test_json_segment_absent_from_png_names_file_and_segment(tmp_path):
    segs = [{"id": 5, "category_id": 7, "iscrowd": 0}, {"id": 31000, "category_id": 26, "iscrowd": 0}]
    _hand_made_coco(tmp_path, 1, segs, np.array([[5, 5, 0, 0]]))
    with pytest.raises(PanopticFormatError, match=r"a\.png.*31000"):
        CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan")[0]


def test_truncated_and_missing_png(tmp_path):
    _hand_made_coco(tmp_path)
    png = tmp_path / "pan" / "a.png"
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    reader = CocoPanopticReader(tmp_path / "p.json", tmp_path / "pan", classes=CLASSES)
    with pytest.raises(PanopticFormatError, match=r"a\.png"):
        reader[0]
    png.unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.png"):
        reader[0]
    with pytest.raises(PanopticFileNotFoundError, match="nothere.json"):
        CocoPanopticReader(tmp_path / "nothere.json", tmp_path / "pan")


def test_cityscapes_round_trip_both_layouts(tmp_path):
    frames = _frames(3, seed=1)
    with CityscapesWriter(tmp_path, "val", CLASSES) as w:
        names = [w.add(0, t, f.image, f.panoptic, f.segments) for t, f in enumerate(frames)]
    assert names == [f"synth_000000_{t:06d}" for t in range(3)]
    gt = tmp_path / "gtFine" / "val" / "synth"
    for f, name in zip(frames, names):
        # independent decoders: PIL reads the 16-bit instanceIds and the 8-bit labelIds
        inst = np.array(Image.open(gt / f"{name}_gtFine_instanceIds.png")).astype(np.int64)
        labels = np.array(Image.open(gt / f"{name}_gtFine_labelIds.png")).astype(np.int64)
        assert np.array_equal(inst, f.panoptic)
        assert np.array_equal(labels, np.where(inst >= 1000, inst // 1000, inst))
    for reader in (CityscapesReader(tmp_path, "val", CLASSES), CityscapesPanopticReader(tmp_path, "val", CLASSES)):
        assert len(reader) == 3 and list(reader.image_ids) == names
        for f, i in zip(frames, range(3)):
            s = reader[i]
            assert np.array_equal(s.panoptic, f.panoptic) and np.array_equal(s.image, f.image)
            assert s.image_id == names[i] and isinstance(s.image_id, str)
            _check_segments(s)


def test_cityscapes_gtfine_crowd_and_ignored_labels(tmp_path):
    raw = np.array([[7, 7, 26, 26], [26001, 26001, 4, 24000], [0, 0, 33, 33]], np.uint16)
    gt = tmp_path / "gtFine" / "train" / "bonn"
    gt.mkdir(parents=True)
    Image.fromarray(raw).save(gt / "bonn_000001_000019_gtFine_instanceIds.png")
    reader = CityscapesReader(tmp_path, "train", CLASSES, load_images=False)
    s = reader[0]
    assert s.image_id == "bonn_000001_000019"
    # 4 = 'static' (ignored in evaluation) -> void; 26 / 33 below 1000 -> crowd of car / bicycle
    assert s.panoptic.tolist() == [[7, 7, 26, 26], [26001, 26001, 0, 24000], [0, 0, 33, 33]]
    assert {x.id: x.iscrowd for x in s.segments} == {7: False, 26: True, 33: True, 26001: False, 24000: False}
    with pytest.raises(PanopticFileNotFoundError, match="leftImg8bit"):
        CityscapesReader(tmp_path, "train", CLASSES)[0]
    # full Cityscapes table: label 17 (pole) is known there, unknown to the street table
    raw[0, 0] = 17
    Image.fromarray(raw).save(gt / "bonn_000001_000019_gtFine_instanceIds.png")
    assert CityscapesReader(tmp_path, "train", load_images=False)[0].panoptic[0, 0] == 17
    with pytest.raises(UnknownCategoryError, match="instanceIds.png.*17"):
        CityscapesReader(tmp_path, "train", CLASSES, load_images=False)[0]
    assert CityscapesReader(tmp_path, "train", CLASSES, unknown="ignore", load_images=False)[0].panoptic[0, 0] == 0


def test_cityscapes_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="gtFine"):
        CityscapesReader(tmp_path, "test")


def test_writer_rejects_bad_input(tmp_path):
    w = CocoPanopticWriter(*coco_paths(tmp_path, "x"), classes=CLASSES)
    with pytest.raises(ValueError, match="shape"):
        w.add(1, "a", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int32))
    cw = CityscapesWriter(tmp_path, "x", CLASSES)
    with pytest.raises(ValueError, match="16-bit"):
        cw.add(0, 0, np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 70000, np.int32))


@pytest.mark.parametrize("fmt", ["coco", "cityscapes"])
def test_synth_command_writes_readable_video_dataset(tmp_path, fmt):
    import argparse

    from hle_core.commands import synth
    from hle_core.data.dataset import PanopticDataset

    parser = argparse.ArgumentParser()
    synth.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--num", "2", "--seed", "4", "--format", fmt,
                              "--video", "--frames", "3", "--size", "64x128", "--split", "val"])
    assert args.func(args) == 0
    ds = PanopticDataset(tmp_path, fmt, CLASSES, split="val")
    assert len(ds) == 6
    gen = SceneGenerator(SIZE, seed=4)
    expected = [f.panoptic for i in range(2) for f in gen.video(3, index=i).frames]
    for j in range(6):
        assert np.array_equal(ds[j]["panoptic"].numpy(), expected[j])
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--out", str(tmp_path), "--size", "64by128"])
