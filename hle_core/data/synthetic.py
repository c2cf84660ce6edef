"""Procedural street scenes with exact panoptic ground truth: the testbed standing in for Cityscapes (§4.1).

A scene is a ground plane seen by a forward camera: sky above, buildings (window grids) and vegetation
(blobby crowns, hedges) standing on the horizon line, a road wedge with perspective lane markings and
tiled sidewalks below. Things — cars, persons, bicycles — stand on the ground; their pixel height is
proportional to ``s = (y_base − horizon) / (H − horizon)`` (inverse depth), so they shrink towards the
horizon. They are drawn far to near (painter's order), often in same-class groups that touch and occlude;
the ground truth is what stays visible, and instances with fewer than ``min_area`` visible pixels become
void. Every region is textured (value noise), then lighting (brightness, colour cast, shadow gradient,
cast shadows) and sensor noise are applied.

Annotation rule (what a Cityscapes annotator draws, not what the renderer paints): the ground truth of an
object is its *annotation mask*, which may be coarser than its painted pixels. Cars and persons are solid
and annotated as painted. A bicycle is painted as thin strokes (wire wheels, a diamond frame of bars one or
two pixels wide), which no annotator traces and no stride-4 decoder can reproduce; it is annotated as a
coarse polygon instead: the two filled wheel discs plus the filled convex hull of its frame points (hubs,
crank, seat, head tube, handlebar). Background seen through a bicycle's wheels and frame therefore belongs
to the bicycle, as in Cityscapes, and no stroke of the annotation is thinner than the wheel radius.

Everything is drawn with numpy broadcasting and OpenCV primitives; randomness comes only from
``numpy.random.Generator`` seeded by ``(seed, index)``, so a frame depends on nothing else.

Video mode (:meth:`SceneGenerator.video`) renders a wider background canvas once and moves a camera over
it (horizontal scroll and zoom) while every object moves with its own velocity; an object keeps its
panoptic id ``category × 1000 + k`` for the whole clip and carries a track id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import cv2
import numpy as np

from ..config import LABEL_DIVISOR, VOID_ID, ClassTable, street_class_table
from .sample import Segment, segments_from_panoptic

__all__ = ["Frame", "Video", "SceneGenerator", "generate_video", "REQUIRED_CLASSES"]

#: Class names the generator draws; the class table must contain all of them (ids may differ).
REQUIRED_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "person", "car", "bicycle")

# Background slots (uint8 map warped with nearest neighbour); each maps to a stuff category.
_SKY, _BUILDING, _VEGETATION, _ROAD, _SIDEWALK, _MARKING = range(6)
_SLOT_CLASS = ("sky", "building", "vegetation", "road", "sidewalk", "road")
# Texture amplitudes per slot: (coarse, mid, fine) noise, multiplicative.
_SLOT_TEXTURE = np.array([[0.00, 0.03, 0.01], [0.05, 0.10, 0.06], [0.25, 0.20, 0.30],
                          [0.06, 0.05, 0.10], [0.05, 0.06, 0.08], [0.02, 0.03, 0.05]], np.float32)

# Object part labels inside a drawn patch (0 = not the object).
_PAINT, _GLASS, _TYRE, _SKIN, _CLOTH2, _METAL = range(1, 7)

# Object heights at s = 1 (ground row at the image bottom) as a fraction of the image height.
_HEIGHT = {"person": 0.62, "car": 0.46, "bicycle": 0.40}

_CAR_COLOURS = np.array([[230, 230, 230], [30, 30, 35], [160, 162, 168], [150, 20, 25], [25, 50, 120],
                         [70, 75, 80], [200, 170, 60], [40, 90, 60]], np.float32)
_BUILDING_COLOURS = np.array([[150, 145, 140], [180, 160, 130], [130, 80, 60], [110, 110, 120],
                              [200, 195, 185], [90, 85, 80]], np.float32)
_SKIN_COLOURS = np.array([[240, 200, 170], [200, 150, 110], [140, 95, 65], [90, 60, 40]], np.float32)


@dataclass
class Frame:
    """One rendered frame.

    ``image``: (H, W, 3) uint8 RGB; ``panoptic``: (H, W) int32, void 0, stuff = category id, thing =
    category id × 1000 + k; ``segments``: one per non-void id (``track_id`` = object index for things,
    −1 for stuff).
    """

    image: np.ndarray
    panoptic: np.ndarray
    segments: list[Segment]
    index: int = 0


@dataclass
class Video:
    """A clip: ``frames`` in time order and ``tracks``, panoptic id -> track id of every object that is
    visible (above ``min_area``) in at least one frame."""

    frames: list[Frame]
    tracks: dict[int, int] = field(default_factory=dict)


class _Road(NamedTuple):
    """Where the ground plane lies on a canvas: everything else in a scene is placed relative to it."""

    horizon: int              # canvas row of the horizon
    vanishing_x: float        # canvas column of the road's vanishing point
    left: float               # road half-width left of the vanishing point, at the bottom row
    right: float              # road half-width right of it, at the bottom row


@dataclass
class _Thing:
    kind: str                 # "person" | "car" | "bicycle"
    pan_id: int               # category id * 1000 + k (stable for the whole clip)
    track: int                # object index
    x: float                  # canvas column of the base centre
    yb: float                 # canvas row of the ground contact
    vx: float = 0.0           # canvas px / frame
    vy: float = 0.0           # ground rows / frame
    facing: int = 1           # +1 right, -1 left
    scale: float = 1.0        # individual size jitter
    aspect: float = 1.0       # car length / height, person width jitter
    phase: float = 0.0        # walking / pedalling phase
    colours: np.ndarray = field(default_factory=lambda: np.zeros((7, 3), np.float32))  # part -> RGB


class SceneGenerator:
    """Deterministic procedural street scenes.

    Args:
        size: ``(H, W)`` of the frames, both ≥ 32.
        seed: scenes depend only on ``(seed, index)``.
        classes: class table containing :data:`REQUIRED_CLASSES` by name (ids are taken from it).
        min_area: things with fewer visible pixels become void.
        density: multiplies the number of things per scene.
        noise_sigma: maximum sensor-noise standard deviation (grey levels).
    """

    def __init__(self, size: tuple[int, int] = (256, 512), seed: int = 0, classes: ClassTable | None = None,
                 min_area: int = 16, density: float = 1.0, noise_sigma: float = 5.0) -> None:
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"size must be (H, W) with H, W >= 32, got {size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if min_area < 1 or density <= 0 or noise_sigma < 0:
            raise ValueError(f"need min_area >= 1, density > 0, noise_sigma >= 0; got {min_area}, {density}, "
                             f"{noise_sigma}")
        self.classes = classes if classes is not None else street_class_table()
        by_name = {c.name: c for c in self.classes.classes}
        missing = [n for n in REQUIRED_CLASSES if n not in by_name]
        if missing:
            raise ValueError(f"class table lacks classes {missing} needed by the generator (has {self.classes.names})")
        if any(by_name[n].isthing for n in REQUIRED_CLASSES[:5]) or not all(by_name[n].isthing
                                                                             for n in REQUIRED_CLASSES[5:]):
            raise ValueError("road..sky must be stuff and person/car/bicycle things in the class table")
        self.H, self.W = int(size[0]), int(size[1])
        self.seed, self.min_area, self.density, self.noise_sigma = int(seed), int(min_area), density, noise_sigma
        self.cat = {n: by_name[n].id for n in REQUIRED_CLASSES}
        self._slot_cat = np.array([self.cat[n] for n in _SLOT_CLASS], np.int32)
        self._pools: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------
    def frame(self, index: int = 0) -> Frame:
        """Still frame number ``index`` (a function of ``(seed, index)`` only)."""
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index), 0])
        road = self._layout(rng, 0.0)
        colour, slots = self._background(rng, self.W, road)
        things = self._spawn(rng, self.W, road, margin=0.05 * self.W, video=False)
        light = self._lighting(rng)
        return self._render(rng, colour, slots, things, road.horizon, (self.W / 2, self.H / 2, 1.0), light, index)

    def video(self, num_frames: int, index: int = 0, camera_speed: float | None = None,
              zoom_rate: float | None = None) -> Video:
        """Clip number ``index`` of ``num_frames`` frames.

        ``camera_speed``: horizontal scroll in pixels per frame (random ±[1, 4]·W/512 when None);
        ``zoom_rate``: relative zoom per frame (random in [0, 0.003] when None).
        """
        if num_frames < 1 or index < 0:
            raise ValueError(f"need num_frames >= 1 and index >= 0, got {num_frames} and {index}")
        rng = np.random.default_rng([self.seed, int(index), 1])
        unit = self.W / 512.0
        speed = rng.choice([-1, 1]) * rng.uniform(1.0, 4.0) * unit if camera_speed is None else float(camera_speed)
        zoom = rng.uniform(0.0, 0.003) if zoom_rate is None else float(zoom_rate)
        travel = min(abs(speed) * (num_frames - 1), 1.5 * self.W)   # the pools cover a 2.5 W canvas
        speed = math.copysign(travel / max(num_frames - 1, 1), speed)
        margin = 0.25 * self.W
        canvas_width = int(math.ceil(self.W + travel + 2 * margin))
        cx0 = margin + self.W / 2 + (travel if speed < 0 else 0.0)
        road = self._layout(rng, cx0 - self.W / 2)
        horizon = road.horizon
        colour, slots = self._background(rng, canvas_width, road)
        things = self._spawn(rng, canvas_width, road, margin=0.0, video=True)
        light = self._lighting(rng)
        frames, tracks = [], {}
        for t in range(num_frames):
            flicker = light.copy()
            flicker[0] *= 1.0 + rng.uniform(-0.02, 0.02)
            cam = (cx0 + speed * t, self.H / 2, 1.0 + zoom * t)
            f = self._render(rng, colour, slots, things, horizon, cam, flicker, t)
            frames.append(f)
            tracks.update({s.id: s.track_id for s in f.segments if s.track_id >= 0})
            for th in things:
                th.x += th.vx
                th.yb = float(np.clip(th.yb + th.vy, horizon + 2, self.H * 1.05))
                th.phase += abs(th.vx) / max(1.0, 0.15 * self._height(th, horizon))
        return Video(frames, tracks)

    # ------------------------------------------------------------------------------------------
    # layout and background (canvas coordinates)
    # ------------------------------------------------------------------------------------------
    def _layout(self, rng: np.random.Generator, x_offset: float) -> _Road:
        """A random horizon row, vanishing column (``x_offset`` + a fraction of W) and road half-widths."""
        horizon = int(self.H * rng.uniform(0.38, 0.55))
        vanishing_x = x_offset + self.W * rng.uniform(0.3, 0.7)
        return _Road(horizon, vanishing_x, self.W * rng.uniform(0.35, 0.9), self.W * rng.uniform(0.35, 0.9))

    def _noise_pools(self) -> np.ndarray:
        """(3, 2H, 3W) float32 value-noise textures (coarse, mid, fine), roughly in [-1, 1], built once per
        generator from its seed; frames take randomly offset windows of them."""
        if self._pools is None:
            rng = np.random.default_rng([self.seed, 2**31 - 1])
            h, w = 2 * self.H, 3 * self.W
            pools = [_value_noise(rng, (h, w), cell) for cell in (48, 12, 3)]
            self._pools = np.stack(pools)
        return self._pools

    def _texture(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """(3, h, w) windows of the noise pools at a random offset (h ≤ 2H, w ≤ 3W)."""
        pools = self._noise_pools()
        h, w = shape
        y = int(rng.integers(0, pools.shape[1] - h + 1))
        x = int(rng.integers(0, pools.shape[2] - w + 1))
        return pools[:, y:y + h, x:x + w]

    def _background(self, rng: np.random.Generator, canvas_width: int, road: _Road) -> tuple[np.ndarray, np.ndarray]:
        """Stuff colours (H, canvas_width, 3) float32 in grey levels and slot map (H, canvas_width) uint8."""
        H, W = self.H, self.W
        horizon, vanishing_x = road.horizon, road.vanishing_x
        slots = np.full((H, canvas_width), _SKY, np.uint8)
        colour = np.empty((H, canvas_width, 3), np.float32)
        coarse, mid, fine = self._texture(rng, (H, canvas_width))
        yy = np.arange(H, dtype=np.float32)[:, None]                        # H x 1
        xx = np.arange(canvas_width, dtype=np.float32)[None, :]             # 1 x canvas_width

        # sky: vertical gradient with clouds from the coarse noise
        top, bottom = rng.uniform([40, 80, 150], [110, 150, 230]), rng.uniform([150, 170, 190], [230, 235, 245])
        t = (yy[:horizon] / max(horizon, 1))[..., None]                     # horizon x 1 x 1
        colour[:horizon] = top + (bottom - top) * t
        clouds = np.clip(coarse[:horizon] * 1.5 - rng.uniform(0.0, 0.8), 0, 1)[..., None] * rng.uniform(0.3, 0.9)
        colour[:horizon] += (235.0 - colour[:horizon]) * clouds

        # buildings: rectangles standing on the horizon with a grid of windows
        x = rng.uniform(-0.1 * W, 0.0)
        while x < canvas_width:
            bw = rng.uniform(0.08, 0.3) * W
            if rng.random() < 0.15:                                           # gap: sky shows through
                x += 0.5 * bw
                continue
            x0, x1 = max(int(x), 0), min(int(x + bw), canvas_width)
            top_row = int(rng.uniform(0.03 * H, max(0.04 * H, horizon - 0.08 * H)))
            if x1 > x0 and horizon > top_row:
                slots[top_row:horizon, x0:x1] = _BUILDING
                colour[top_row:horizon, x0:x1] = _BUILDING_COLOURS[rng.integers(len(_BUILDING_COLOURS))] \
                    * rng.uniform(0.8, 1.15)
                self._windows(rng, colour, top_row, horizon, int(x), int(x + bw), canvas_width)
            x += bw

        self._vegetation(rng, slots, colour, canvas_width, horizon, mid)

        # ground: road wedge from the vanishing point, sidewalks outside it
        g = slice(horizon, H)
        s = (yy[g] - horizon + 1.0) / (H - horizon)                         # Hg x 1, inverse depth
        xl, xr = vanishing_x - s * road.left, vanishing_x + s * road.right  # Hg x 1 road edges
        on_road = (xx >= xl) & (xx <= xr)                                   # Hg x canvas_width
        depth = 1.0 / s                                                      # Hg x 1
        # sidewalk tiles: rows at equal depth steps, columns converging to the vanishing point
        tile = rng.uniform(0.15, 0.3)
        tile_rows = (depth * tile) % 1.0 < 0.08 * tile * depth               # Hg x 1
        tile_cols = (np.abs(xx - vanishing_x) / s) % (0.08 * W) < 0.006 * W  # Hg x canvas_width
        side = rng.uniform([140, 130, 120], [200, 190, 180]).astype(np.float32)
        colour[g] = np.where((tile_rows | tile_cols)[..., None], side * 0.8, side)
        slots[g] = np.where(on_road, _ROAD, _SIDEWALK)
        asphalt = rng.uniform(55, 95) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
        colour[g] = np.where(on_road[..., None], asphalt, colour[g])
        # lane markings: dashed lines at fixed fractions of the road, solid edge lines
        dash = (depth * rng.uniform(0.3, 0.6)) % 1.0 < 0.45                   # Hg x 1
        half = np.maximum(0.6, 0.006 * W * s)                                 # Hg x 1 line half width
        marks = np.zeros_like(on_road)
        lanes = rng.integers(1, 4)
        for f in np.arange(1, lanes + 1) / (lanes + 1):
            marks |= (np.abs(xx - (xl + f * (xr - xl))) < half) & dash
        for f in (0.03, 0.97):
            marks |= np.abs(xx - (xl + f * (xr - xl))) < half
        marks &= on_road
        slots[g][marks] = _MARKING
        colour[g][marks] = rng.uniform(200, 245)

        # texture: multiplicative noise with per-slot amplitudes
        amp = _SLOT_TEXTURE[slots]                                           # H x canvas_width x 3
        colour *= (1.0 + amp[..., 0] * coarse + amp[..., 1] * mid + amp[..., 2] * fine)[..., None]
        return colour, slots

    def _windows(self, rng: np.random.Generator, colour: np.ndarray, top: int, horizon: int, x0: int, x1: int,
                 canvas_width: int) -> None:
        """Window grid on the facade rows [top, horizon), columns [x0, x1) (clipped to the canvas)."""
        pw, ph = rng.uniform(0.025, 0.06) * self.W, rng.uniform(0.04, 0.09) * self.H
        fill_x, fill_y = rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.7)
        ys = np.arange(top, horizon, dtype=np.float32)[:, None] - top                   # h x 1
        xs = np.arange(max(x0, 0), min(x1, canvas_width), dtype=np.float32)[None, :] - x0  # 1 x w
        inside = (ys > 0.3 * ph) & (ys < horizon - top - 0.8 * ph) & (xs > 0.3 * pw) & (xs < x1 - x0 - 0.3 * pw)
        win = inside & ((ys % ph) < fill_y * ph) & ((xs % pw) < fill_x * pw)
        if not win.any():
            return
        lit = rng.random() < 0.3
        glass = rng.uniform([180, 160, 90], [250, 230, 150]) if lit else rng.uniform([30, 40, 50], [90, 100, 120])
        colour[top:horizon, max(x0, 0):min(x1, canvas_width)][win] = glass.astype(np.float32)

    def _vegetation(self, rng: np.random.Generator, slots: np.ndarray, colour: np.ndarray, canvas_width: int,
                    horizon: int, mid: np.ndarray) -> None:
        """Tree crowns (blurred discs + noise, thresholded: blobby outlines), trunks and hedges."""
        H, W, f = self.H, self.W, 4                      # crowns drawn at 1/f resolution, then blurred
        if horizon < 8:
            return
        low = np.zeros((horizon // f + 1, canvas_width // f + 1), np.float32)
        trunks = []
        for _ in range(int(rng.integers(0, 3 + canvas_width // (W // 3)))):
            r = rng.uniform(0.04, 0.14) * H
            cx, cy = rng.uniform(0, canvas_width), horizon - rng.uniform(0.3, 1.3) * r - rng.uniform(0.0, 0.1) * H
            for _ in range(int(rng.integers(3, 6))):
                ox, oy = rng.normal(0, 0.45 * r, 2)
                cv2.circle(low, (int((cx + ox) / f), int((cy + oy) / f)), max(1, int(rng.uniform(0.5, 0.8) * r / f)),
                           1.0, -1)
            trunks.append((int(cx - 0.08 * r), int(cx + 0.08 * r) + 1, int(cy)))
        for _ in range(int(rng.integers(0, 3))):                          # hedges on the horizon
            x0 = rng.uniform(0, canvas_width)
            cv2.rectangle(low, (int(x0 / f), int((horizon - rng.uniform(0.02, 0.07) * H) / f)),
                          (int((x0 + rng.uniform(0.1, 0.4) * W) / f), horizon // f), 1.0, -1)
        if not low.any():
            return
        low = cv2.GaussianBlur(low, (0, 0), 1.5)
        soft = cv2.resize(low, (canvas_width, horizon), interpolation=cv2.INTER_LINEAR)  # horizon x canvas_width
        veg = soft + 0.35 * mid[:horizon] > 0.5
        for t0, t1, row in trunks:
            veg[max(row, 0):horizon, max(t0, 0):max(min(t1, canvas_width), 0)] = True
        green = rng.uniform([50, 90, 30], [100, 150, 70]).astype(np.float32)
        slots[:horizon][veg] = _VEGETATION
        colour[:horizon][veg] = green * (0.75 + 0.25 * mid[:horizon][veg])[:, None]

    # ------------------------------------------------------------------------------------------
    # things
    # ------------------------------------------------------------------------------------------
    def _spawn(self, rng: np.random.Generator, canvas_width: int, road: _Road, margin: float,
               video: bool) -> list[_Thing]:
        """Cars on the road (some parked in touching rows), persons on the sidewalks (some in groups,
        some crossing), bicycles (some in racks), on a canvas ``canvas_width`` wide; sidewalk objects may stand
        up to ``margin`` beyond its sides. ``video``: give them velocities."""
        H, W = self.H, self.W
        horizon, vanishing_x = road.horizon, road.vanishing_x
        things: list[_Thing] = []
        next_k = {"person": 0, "car": 0, "bicycle": 0}
        area_scale = self.density * canvas_width / W

        def row() -> tuple[float, float]:
            s = math.exp(rng.uniform(math.log(0.06), math.log(1.05)))        # inverse depth
            return s, horizon + s * (H - horizon)

        def road_x(s: float) -> float:
            return rng.uniform(vanishing_x - s * road.left, vanishing_x + s * road.right)

        def side_x(s: float) -> float:
            left, right = max(0.0, vanishing_x - s * road.left), min(float(canvas_width), vanishing_x + s * road.right)
            spans = [(-margin, left), (right, canvas_width + margin)]
            lengths = np.array([max(b - a, 0.0) for a, b in spans])
            if lengths.sum() < 1.0:
                return rng.uniform(-margin, canvas_width + margin)
            a, b = spans[int(rng.choice(2, p=lengths / lengths.sum()))]
            return rng.uniform(a, b)

        def add(kind: str, x: float, yb: float, speed: float = 0.0, facing: int | None = None) -> _Thing:
            k = next_k[kind]
            if k >= LABEL_DIVISOR:
                raise ValueError(f"more than {LABEL_DIVISOR} {kind} instances in one scene")
            next_k[kind] = k + 1
            th = _Thing(kind, self.cat[kind] * LABEL_DIVISOR + k, len(things), x, yb,
                        facing=int(facing if facing is not None else rng.choice([-1, 1])),
                        scale=rng.uniform(0.88, 1.12), phase=rng.uniform(0, 2 * math.pi))
            th.aspect = rng.uniform(2.2, 2.8) if kind == "car" else rng.uniform(0.85, 1.15)
            th.colours = self._palette(rng, kind)
            s = (yb - horizon) / (H - horizon)
            if video:
                th.vx = th.facing * speed * (0.3 + 0.7 * s) * W / 512.0   # nearer: faster on screen
                if kind == "person" and rng.random() < 0.3:
                    th.vy = rng.uniform(-0.3, 0.3)
            things.append(th)
            return th

        # cars: single ones on the road, plus a parked row (same depth, bumper to bumper)
        for _ in range(int(rng.poisson(3.0 * area_scale))):
            s, yb = row()
            add("car", road_x(s), yb, rng.uniform(4.0, 14.0))
        if rng.random() < 0.7:
            s, yb = row()
            x, facing = road_x(s), int(rng.choice([-1, 1]))
            for _ in range(int(rng.integers(2, 5))):
                th = add("car", x, yb + rng.uniform(-0.01, 0.01) * (H - horizon) * s, 0.0, facing)
                x += self._height(th, horizon) * th.aspect * rng.uniform(0.85, 1.02)
        # persons: single ones on the sidewalks (some crossing the road), plus a group side by side
        for _ in range(int(rng.poisson(4.0 * area_scale))):
            s, yb = row()
            add("person", road_x(s) if rng.random() < 0.2 else side_x(s), yb, rng.uniform(0.5, 2.5))
        for _ in range(int(rng.random() < 0.8) + int(rng.random() < 0.4)):
            s, yb = row()
            x, facing, speed = side_x(s), int(rng.choice([-1, 1])), rng.uniform(0.5, 2.5)
            for _ in range(int(rng.integers(2, 5))):
                th = add("person", x, yb + rng.uniform(-0.02, 0.02) * (H - horizon) * s, speed, facing)
                x += self._height(th, horizon) * 0.28 * rng.uniform(0.7, 1.2)
        # bicycles: singles (ridden in video) plus racks of overlapping parked bikes
        for _ in range(1 + int(rng.poisson(1.0 * area_scale))):
            s, yb = row()
            add("bicycle", side_x(s) if rng.random() < 0.6 else road_x(s), yb, rng.uniform(3.0, 8.0))
        if rng.random() < 0.4:
            s, yb = row()
            x = side_x(s)
            for _ in range(int(rng.integers(2, 5))):
                th = add("bicycle", x, yb, 0.0, 1)
                x += self._height(th, horizon) * rng.uniform(0.6, 1.0)
        return things

    def _palette(self, rng: np.random.Generator, kind: str) -> np.ndarray:
        """(7, 3) RGB colour of each part label of one object."""
        c = np.zeros((7, 3), np.float32)
        c[_GLASS] = rng.uniform([25, 35, 45], [70, 85, 100])
        c[_TYRE] = rng.uniform(15, 35)
        c[_METAL] = rng.uniform(150, 210)
        c[_SKIN] = _SKIN_COLOURS[rng.integers(len(_SKIN_COLOURS))]
        if kind == "car":
            c[_PAINT] = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.85, 1.1)
        else:
            c[_PAINT] = rng.uniform(20, 230, 3)
            c[_CLOTH2] = rng.uniform([20, 20, 30], [120, 110, 140]) if rng.random() < 0.8 else rng.uniform(20, 230, 3)
        return c

    def _height(self, th: _Thing, horizon: int) -> float:
        """Pixel height (canvas units) of ``th`` standing at row ``th.yb``: ∝ inverse depth."""
        s = (th.yb - horizon) / (self.H - horizon)
        return _HEIGHT[th.kind] * self.H * s * th.scale

    # ------------------------------------------------------------------------------------------
    # rendering one frame
    # ------------------------------------------------------------------------------------------
    def _lighting(self, rng: np.random.Generator) -> np.ndarray:
        """[brightness, cast r, g, b, shadow angle, shadow strength, noise sigma] of a scene."""
        return np.array([rng.uniform(0.6, 1.3), *rng.uniform(0.85, 1.15, 3), rng.uniform(0, 2 * math.pi),
                         rng.uniform(0.0, 0.5), rng.uniform(0.2, 1.0) * self.noise_sigma], np.float32)

    def _render(self, rng: np.random.Generator, colour: np.ndarray, slots: np.ndarray, things: list[_Thing],
                horizon: int, camera: tuple[float, float, float], light: np.ndarray, index: int) -> Frame:
        H, W = self.H, self.W
        cx, cy, zoom = camera
        if zoom == 1.0 and cx == W / 2 and colour.shape[1] == W:
            img, slot = colour.copy(), slots
        else:   # screen (u, v) -> canvas (cx + (u - W/2)/zoom, cy + (v - H/2)/zoom)
            m = np.array([[1 / zoom, 0, cx - W / (2 * zoom)], [0, 1 / zoom, cy - H / (2 * zoom)]], np.float32)
            img = cv2.warpAffine(colour, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REFLECT)
            slot = cv2.warpAffine(slots, m, (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT)

        # things far to near (painter's order); owner[y, x] = 1 + index of the object drawn last there
        order = sorted(range(len(things)), key=lambda j: things[j].yb)
        owner = np.zeros((H, W), np.int32)
        shadow = np.zeros((H, W), np.uint8)
        _, mid, fine = self._noise_pools()
        for j in order:
            th = things[j]
            h = self._height(th, horizon) * zoom
            u, v = (th.x - cx) * zoom + W / 2, (th.yb - cy) * zoom + H / 2
            if h < 2 or u + 2 * h * th.aspect < 0 or u - 2 * h * th.aspect > W or v - h > H:
                continue
            parts, x0, y0, claim = _DRAW[th.kind](th, u, v, h)
            if th.kind != "bicycle":    # cast shadow: a dark ellipse on the ground under the object
                half = max(1, int(0.5 * (parts.shape[1] - 4)))
                cv2.ellipse(shadow, (int(u), int(v)), (half, max(1, int(0.04 * h))), 0, 0, 360, 1, -1)
            self._composite(img, owner, parts, claim, x0, y0, th, j + 1, mid, fine)
        img *= np.where(shadow > 0, np.float32(0.6), np.float32(1.0))[..., None]

        # ground truth: visible pixels of each object; too small ones become void
        obj_ids = np.array([VOID_ID] + [th.pan_id for th in things], np.int32)
        area = np.bincount(owner.ravel(), minlength=len(obj_ids))
        obj_ids[1:][area[1:] < self.min_area] = VOID_ID
        panoptic = np.where(owner > 0, obj_ids[owner], self._slot_cat[slot]).astype(np.int32)

        image = self._photometric(rng, img, light)
        tracks = {th.pan_id: th.track for th in things}
        return Frame(image, panoptic, segments_from_panoptic(panoptic, self.classes, tracks), index)

    def _composite(self, img: np.ndarray, owner: np.ndarray, parts: np.ndarray, claim: np.ndarray, x0: int, y0: int,
                   th: _Thing, label: int, mid: np.ndarray, fine: np.ndarray) -> None:
        """Paint the object's patch over ``img`` (H, W, 3) where ``parts`` > 0 and claim the pixels of its
        annotation mask ``claim`` (same shape as ``parts``) in ``owner`` (H, W)."""
        H, W = owner.shape
        ph, pw = parts.shape
        sy0, sy1, sx0, sx1 = max(y0, 0), min(y0 + ph, H), max(x0, 0), min(x0 + pw, W)
        if sy1 <= sy0 or sx1 <= sx0:
            return
        p = parts[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]                    # h x w part labels
        mask = p > 0
        annotated = claim[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]           # h x w annotation mask
        if not annotated.any():
            return
        # texture moves with the object: a window of the noise pool fixed by the track id
        ty, tx = (th.track * 97) % H, (th.track * 389) % (2 * W)
        h, w = p.shape
        tex = 1.0 + 0.06 * mid[ty:ty + h, tx:tx + w] + 0.08 * fine[ty:ty + h, tx:tx + w]     # h x w
        shade = np.linspace(1.1, 0.8, ph, dtype=np.float32)[sy0 - y0:sy1 - y0, None]         # h x 1
        col = th.colours[p] * (tex * shade)[..., None]                                        # h x w x 3
        img[sy0:sy1, sx0:sx1][mask] = col[mask]
        owner[sy0:sy1, sx0:sx1][annotated] = label

    def _photometric(self, rng: np.random.Generator, img: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Brightness, colour cast, shadow gradient, slight blur (optics) and Gaussian sensor noise."""
        H, W = self.H, self.W
        bright, cast, angle, strength, sigma = light[0], light[1:4], light[4], light[5], light[6]
        ramp = (np.cos(angle) * (np.arange(W, dtype=np.float32)[None, :] / W - 0.5)
                + np.sin(angle) * (np.arange(H, dtype=np.float32)[:, None] / H - 0.5)) + 0.5   # H x W
        gain = (bright * (1.0 - strength * np.clip(ramp, 0, 1)))[..., None] * cast             # H x W x 3
        img = cv2.GaussianBlur(img * gain, (3, 3), 0.6)
        if sigma > 0:
            img += rng.standard_normal((H, W, 3), dtype=np.float32) * sigma
        return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# drawing: each returns (parts (h, w) uint8 part labels, x0, y0, claim (h, w) bool annotation mask) in
# screen pixels; claim is what the ground truth holds (module docstring: annotation rule)
# ----------------------------------------------------------------------------------------------
def _patch(u: float, v: float, half_w: float, h: float) -> tuple[np.ndarray, int, int, Callable]:
    """Empty patch around base centre (u, v) and a function mapping object coordinates (dx right of the
    centre, dy up from the ground, in pixels) to patch pixel coordinates."""
    x0, y0 = int(math.floor(u - half_w)) - 2, int(math.floor(v - h)) - 2
    parts = np.zeros((int(math.ceil(h)) + 4, int(math.ceil(2 * half_w)) + 5), np.uint8)

    def at(dx, dy) -> np.ndarray:
        return np.round(np.stack([u + np.asarray(dx, np.float64) - x0,
                                  v - np.asarray(dy, np.float64) - y0], -1)).astype(np.int32)
    return parts, x0, y0, at


def _draw_car(th: _Thing, u: float, v: float, h: float):
    """Side view: body, cabin with windows, wheels with hubs, a headlight."""
    L = th.aspect * h
    parts, x0, y0, at = _patch(u, v, L / 2, h)
    f = th.facing
    body = [(-0.5, 0.15), (-0.5, 0.55), (-0.3, 0.62), (0.4, 0.6), (0.5, 0.45), (0.5, 0.15)]
    cabin = [(-0.3, 0.58), (-0.2, 1.0), (0.12, 1.0), (0.3, 0.58)]
    window = [(-0.24, 0.63), (-0.17, 0.93), (0.1, 0.93), (0.23, 0.63)]
    to = lambda pts: at([f * a * L for a, _ in pts], [b * h for _, b in pts])  # noqa: E731
    cv2.fillPoly(parts, [to(body), to(cabin)], _PAINT)
    cv2.fillPoly(parts, [to(window)], _GLASS)
    cv2.line(parts, tuple(to([(-0.03, 0.63)])[0]), tuple(to([(-0.03, 0.93)])[0]), _PAINT,
             max(1, int(0.03 * L)))
    r = 0.19 * h
    for a in (-0.32, 0.32):
        c = tuple(to([(a, 0.0)])[0] - np.array([0, int(round(r))]))
        cv2.circle(parts, c, max(1, int(round(r))), _TYRE, -1)
        cv2.circle(parts, c, max(1, int(round(0.5 * r))), _METAL, -1)
    cv2.fillPoly(parts, [to([(0.46, 0.42), (0.5, 0.42), (0.5, 0.5), (0.46, 0.5)])], _METAL)
    return parts, x0, y0, parts > 0


def _draw_person(th: _Thing, u: float, v: float, h: float):
    """Head, torso, swinging arms and striding legs, feet."""
    w = 0.28 * h * th.aspect
    parts, x0, y0, at = _patch(u, v, 0.5 * w + 0.15 * h, h)
    stride = 0.12 * h * math.sin(th.phase)
    t = max(1, int(round(0.07 * h)))
    for sgn in (-1, 1):     # legs: hip to foot, feet swapped by the stride
        hip, foot = at(sgn * 0.18 * w, 0.5 * h), at(sgn * stride, 0.02 * h)
        cv2.line(parts, tuple(hip), tuple(foot), _CLOTH2, max(1, int(round(0.1 * h))))
        cv2.line(parts, tuple(foot), tuple(at(sgn * stride + th.facing * 0.05 * h, 0.01 * h)), _TYRE, t)
    torso = at([-0.5 * w, 0.5 * w, 0.4 * w, -0.4 * w], [0.82 * h, 0.82 * h, 0.48 * h, 0.48 * h])
    cv2.fillPoly(parts, [torso], _PAINT)
    for sgn in (-1, 1):     # arms swing opposite to the legs
        cv2.line(parts, tuple(at(sgn * 0.45 * w, 0.8 * h)), tuple(at(sgn * 0.5 * w - sgn * 0.5 * stride, 0.5 * h)),
                 _PAINT, t)
    cv2.circle(parts, tuple(at(0.0, 0.9 * h)), max(1, int(round(0.075 * h))), _SKIN, -1)
    return parts, x0, y0, parts > 0


def _draw_bicycle(th: _Thing, u: float, v: float, h: float):
    """Two wheel rings and a thin diamond frame with saddle and handlebar, annotated coarsely: filled wheel
    discs plus the filled convex hull of the frame points (module docstring: annotation rule)."""
    r = 0.36 * h
    d = 2.5 * r
    parts, x0, y0, at = _patch(u, v, 0.5 * d + r, h)
    f = th.facing
    p = {"rear": (-0.5 * d, r), "front": (0.5 * d, r), "crank": (-0.05 * d, 0.9 * r),
         "seat": (-0.25 * d, 2.3 * r), "head": (0.35 * d, 2.35 * r), "bar": (0.3 * d, 2.75 * r)}
    pt = {k: tuple(at(f * x, y)) for k, (x, y) in p.items()}
    ring = max(1, int(round(0.12 * r)))
    for k in ("rear", "front"):
        cv2.circle(parts, pt[k], max(1, int(round(r - ring / 2))), _TYRE, ring)
    bar = max(1, int(round(0.08 * r)))
    for a, b in (("rear", "seat"), ("seat", "crank"), ("crank", "rear"), ("seat", "head"), ("crank", "head"),
                 ("head", "front"), ("head", "bar")):
        cv2.line(parts, pt[a], pt[b], _PAINT, bar)
    cv2.line(parts, tuple(at(f * -0.33 * d, 2.4 * r)), tuple(at(f * -0.17 * d, 2.4 * r)), _TYRE, max(1, bar + 1))
    cv2.line(parts, pt["bar"], tuple(at(f * 0.2 * d, 2.8 * r)), _METAL, bar)
    # annotation: a coarse polygon as an annotator would draw it, never thinner than a wheel disc
    claim = np.zeros_like(parts)
    for k in ("rear", "front"):
        cv2.circle(claim, pt[k], max(1, int(round(r))), 1, -1)
    frame = np.array([pt[k] for k in ("rear", "crank", "seat", "bar", "head", "front")]
                     + [tuple(at(f * -0.33 * d, 2.4 * r)), tuple(at(f * 0.2 * d, 2.8 * r))], np.int32)
    cv2.fillConvexPoly(claim, cv2.convexHull(frame), 1)
    return parts, x0, y0, (claim > 0) | (parts > 0)


_DRAW = {"car": _draw_car, "person": _draw_person, "bicycle": _draw_bicycle}


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int, octaves: int = 3) -> np.ndarray:
    """Fractal value noise (H, W) float32, about unit range: bicubically upsampled random grids, cell size
    halving and amplitude halving per octave."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = h // cell + 2, w // cell + 2
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]
        total += amp
        amp, cell = amp * 0.5, max(1, cell // 2)
    return out / (total * 1.5)


def generate_video(num_frames: int, size: tuple[int, int] = (256, 512), seed: int = 0, index: int = 0,
                   classes: ClassTable | None = None, **kwargs) -> Video:
    """Convenience: ``SceneGenerator(size, seed, classes, **kwargs).video(num_frames, index)``."""
    return SceneGenerator(size, seed, classes, **kwargs).video(num_frames, index)
