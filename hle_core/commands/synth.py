"""``hle synth``: write a synthetic street-scene data set (paper §4.1 testbed) in a real panoptic format.

    hle synth --out data/synth --num 500 --seed 1 --format cityscapes --split train
    hle synth --out data/synth_video --num 4 --video --frames 30 --format coco --split val
    hle synth --video --bag camera.mcap --num 2 --frames 30 --fps 10 --seed 7

COCO layout: ``annotations/panoptic_<split>.json``, ``annotations/panoptic_<split>/``, ``<split>/``.
Cityscapes layout: ``leftImg8bit/<split>/synth/``, ``gtFine/<split>/synth/`` (instanceIds, labelIds) and the
``cityscapesPanopticParser`` files ``gtFine/cityscapes_panoptic_<split>.json`` + PNG folder. Both read back
with ``hle_core.data.PanopticDataset``.

``--bag`` (with ``--video``) writes a rosbag2 camera bag instead (:func:`hle_core.bags.write_synthetic_bag`):
``/camera/image_raw`` (sensor_msgs/Image rgb8, frame_id ``camera``) and ``/camera/panoptic_gt`` (32SC1,
stuff = class id, things = class × 1000 + k, k stable over a clip), equal header stamps at ``--fps``, clips
5 s apart. ``PATH.mcap`` / ``PATH.db3`` is a single storage file; another PATH a bag directory in
``--bag-storage``. Read it with ``hle bag-eval``, replay it with ``hle bag-play``.
"""
from __future__ import annotations

import argparse
import re

__all__ = ["add_parser", "run", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``"256x512"`` -> (256, 512)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 256x512), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return h, w


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("synth", help="write a synthetic street-scene panoptic data set",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output data set root (created if missing); or give --bag")
    p.add_argument("--num", type=int, default=100, help="number of images, or of clips with --video (default 100)")
    p.add_argument("--seed", type=int, default=0, help="scene seed; the data set is a function of it (default 0)")
    p.add_argument("--format", choices=("coco", "cityscapes"), default="coco", help="on-disk format (default coco)")
    p.add_argument("--video", action="store_true",
                   help="write clips (moving camera and objects, stable instance ids) instead of stills")
    p.add_argument("--frames", type=int, default=30, help="frames per clip with --video (default 30)")
    p.add_argument("--size", type=parse_size, default=(256, 512), help="frame size HxW (default 256x512)")
    p.add_argument("--split", default="train", help="split name used in paths and file names (default train)")
    bag = p.add_argument_group("rosbag2 output (instead of --out; needs --video)")
    bag.add_argument("--bag", metavar="PATH",
                     help="write a camera bag with ground truth: PATH.mcap / PATH.db3 = one storage file, another "
                          "PATH = a bag directory")
    bag.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default=None,
                     help="storage of a bag directory (default mcap; a .mcap / .db3 suffix implies it)")
    bag.add_argument("--fps", type=float, default=10.0, help="frame rate of the header stamps (default 10)")
    bag.add_argument("--overwrite", action="store_true", help="replace an existing bag at --bag")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..config import ConfigError, street_class_table
    from ..data import CityscapesWriter, CocoPanopticWriter, SceneGenerator, coco_paths

    if args.num < 1 or args.frames < 1:
        raise ValueError(f"--num and --frames must be >= 1, got {args.num} and {args.frames}")
    if (args.out is None) == (args.bag is None):
        raise ConfigError("give exactly one of --out (a data set) and --bag (a rosbag2 bag)")
    if args.bag is not None:
        return _write_bag(args)
    classes = street_class_table()
    gen = SceneGenerator(tuple(args.size), seed=args.seed, classes=classes)
    if args.format == "coco":
        writer = CocoPanopticWriter(*coco_paths(args.out, args.split), classes=classes)
    else:
        writer = CityscapesWriter(args.out, args.split, classes)
    frames_per = args.frames if args.video else 1
    with tqdm(total=args.num * frames_per, desc=f"synth {args.format}", unit="img") as bar:
        for i in range(args.num):
            frames = gen.video(args.frames, index=i).frames if args.video else [gen.frame(i)]
            for t, f in enumerate(frames):
                if args.format == "coco":
                    extra = {"sequence": i, "frame": t} if args.video else {}
                    name = f"{i:06d}_{t:06d}" if args.video else f"{i:06d}"
                    writer.add(i * frames_per + t + 1, name, f.image, f.panoptic, f.segments, **extra)
                else:
                    writer.add(i, t, f.image, f.panoptic, f.segments)
                bar.update(1)
    path = writer.close()
    print(f"wrote {args.num * frames_per} images to {args.out} ({args.format}); annotations: {path}")
    return 0


def _write_bag(args: argparse.Namespace) -> int:
    from ..bags import write_synthetic_bag
    from ..config import ConfigError

    if not args.video:
        raise ConfigError("--bag writes video clips: add --video (and --frames)")
    try:
        info = write_synthetic_bag(args.bag, num_clips=args.num, frames=args.frames, size=tuple(args.size),
                                   seed=args.seed, fps=args.fps, storage=args.bag_storage, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as exc:
        raise ConfigError(str(exc)) from exc
    print(f"wrote {info.frames} frames ({info.clips} clip(s) x {info.frames_per_clip}, {info.size[0]}x{info.size[1]}, "
          f"{info.fps:g} fps) to {info.path} ({info.storage}); topics {info.image_topic} (rgb8), "
          f"{info.gt_topic} (32SC1 ground truth)")
    return 0
