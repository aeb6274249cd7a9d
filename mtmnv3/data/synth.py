"""Procedural scene generator: the package's built-in default data.

Video sequences of objects of C classes moving over textured backgrounds,
deterministic from a seed. Each object keeps one identity from the frame it
enters to the frame it leaves (ids are never reused within a sequence);
objects enter from the image borders, leave through them, change scale
smoothly and occlude each other in a fixed depth order.

Per-frame annotations (one row per object that has at least one pixel inside
the image):

* ``boxes``: float32 (K, 4) xyxy, the tight box of the object's full
  silhouette clipped to the image (occlusion does not shrink it, as in
  MOTChallenge); ``x2``/``y2`` are exclusive pixel edges.
* ``labels`` (0-based class), ``instance_ids`` (1-based, per sequence).
* ``visibility``: visible silhouette pixels / whole silhouette pixels, so
  both occlusion and truncation by the border lower it.
* ``ignore``: ``visibility < SceneConfig.min_visibility`` (MOTChallenge's
  "consider" flag 0).

**Classification label of a frame** (what an edge camera would report: "what
is the main thing in view"): the class of the object with the largest visible
area (visible silhouette pixels, ties to the lower instance id), or the extra
class ``C`` = ``'no object'`` when no object shows at least
``SceneConfig.cls_min_visible_px`` pixels. The label depends only on scene
content, so it stays correct under the lighting, blur, noise, resolution and
background-domain shifts used in robustness studies (a lighting or domain
label would not).

**Moving camera** (off by default): ``camera_speed`` pans the camera (a
steady pan, or a back-and-forth sweep with ``camera_period``) and
``camera_shake`` adds a random jitter of a few pixels per frame. Unlike the
backdrop drift of ``camera_pan``, the whole scene moves in the image, objects
with the background, as a real moving camera shows it; objects keep their
own motion in the world and enter and leave through the image borders.
``SynthFrame.camera_offset`` is the camera's displacement since the first
frame. The camera draws from its own random stream, so turning it on keeps
the objects (their classes, looks, sizes and world motion).

Degradations are applied per sequence, after rendering and in this order:
lighting (gamma, contrast, brightness, colour cast), motion blur, resolution
(down then up) and noise. They never move objects, so annotations hold; the
background draws from its own random stream, so the same seed with another
background domain gives the same objects, motion and labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from mtmnv3.data.backgrounds import DOMAINS, make_background
from mtmnv3.data.sprites import APPEARANCE_POOLS, APPEARANCES, AppearanceSource

__all__ = [
    "DOMAINS",
    "NO_OBJECT_CLASS_NAME",
    "SceneConfig",
    "SynthFrame",
    "camera_path",
    "cls_class_names",
    "generate_sequence",
    "make_background",
    "noisy_detections",
    "sequence_meta",
]

NO_OBJECT_CLASS_NAME = "no object"
#: Fraction of the image side the camera pans over (background margin).
PAN_MARGIN_FRAC = 0.08
#: Sprites are lit between this fraction of their tint colour and the full colour.
SHADE_MIN = 0.3
#: Object tint: HSV saturation and value ranges (OpenCV 8-bit scale).
TINT_SATURATION = (150, 255)
TINT_VALUE = (170, 255)
#: Entering objects aim within this angle of the inward normal of their edge.
ENTER_ANGLE_SPREAD = math.pi / 4
#: An object not inside the image this many frames after spawning is retired.
MAX_ENTER_FRAMES = 400
SEED_STREAM_SCENE = 1
SEED_STREAM_DEGRADE = 2
SEED_STREAM_META = 3
SEED_STREAM_BACKGROUND = 4
SEED_STREAM_CAMERA = 5
#: Moving-camera knobs; left at these defaults they are not written by
#: :meth:`SceneConfig.to_dict`, so the knob hashes of existing data stay the same.
CAMERA_DEFAULTS = {"camera_speed": 0.0, "camera_period": 0, "camera_shake": 0.0}


def _pair(value, name: str, lo: float, hi: float = math.inf, ordered: bool = True) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (lo <= a <= hi and lo <= b <= hi) or (ordered and a > b):
        raise ValueError(f"{name} must satisfy {lo} <= min <= max <= {hi}, got {value!r}")
    return a, b


@dataclass(frozen=True)
class SceneConfig:
    """Every knob of the scene generator (frozen; hashable).

    Attributes:
        num_sequences: number of sequences (videos).
        num_frames: frames per sequence.
        image_size: int (square) or (height, width), pixels.
        num_objects: objects present at once (slots; a leaving object's slot
            spawns a new identity after a random delay).
        appearance: ``'auto'`` (Fashion-MNIST if installed, else sprites),
            ``'fashion_mnist'`` or ``'sprites'``.
        appearance_pool: ``'train'``, ``'val'`` or ``'test'`` object-image pool.
        domains: background texture families; sequence i uses
            ``domains[i % len(domains)]``. Known: ``DOMAINS``.
        object_scale: (min, max) object side as a fraction of the smaller
            image side.
        main_object_scale: None (every slot alike) or (min, max) scale of a
            "main subject": slot 0's objects get this scale and are drawn in
            front of the others, so the frame's classification label (the
            most visible object) is rarely a near-tie between two objects.
        scale_change: amplitude of the smooth log-scale oscillation of each
            object (0 = constant size; 0.3 = about x0.74..x1.35).
        speed: (min, max) object speed, fraction of the smaller image side per frame.
        respawn_delay: (min, max) frames before a free slot spawns a new object.
        start_offset: each sequence starts recording after a random number
            of simulated frames in [0, start_offset] (0 = at the start).
            Short sequences then sample the whole life of a scene (objects
            entering, leaving, respawned) instead of only its first frames,
            where every object has just been placed inside the view.
        camera_pan: background pan speed, pixels per frame: the backdrop
            drifts inside a small margin while objects keep their image
            motion (not a moving camera; see ``camera_speed``).
        camera_speed: moving camera, pixels per frame (0 = still): the whole
            scene, background and objects, moves in the image.
        camera_period: frames of one back-and-forth sweep of the moving
            camera (speed ``camera_speed * cos(2 pi t / period)``); 0 = a
            steady pan in one direction.
        camera_shake: camera shake, pixels: every frame the view jumps by an
            independent random offset, uniform in ``[-shake, shake]`` on each
            axis (rounded to whole pixels).
        brightness: additive brightness in [-1, 1] (fraction of full scale).
        contrast: contrast gain around mid-grey (> 0).
        gamma: gamma applied to [0, 1] intensities (> 0; > 1 darkens).
        color_cast: per-channel RGB gains.
        lighting_jitter: per-sequence random variation of the lighting
            knobs (0 = every sequence uses exactly the knobs).
        downscale: resolution factor >= 1; frames are shrunk by it and
            resized back (1 = off).
        motion_blur: linear blur kernel length in pixels (0 or 1 = off);
            the direction is random per sequence.
        noise_std: Gaussian noise standard deviation in grey levels (0-255).
        min_visibility: boxes less visible than this are flagged ignore.
        cls_min_visible_px: visible pixels an object needs to be the frame's
            classification label (else ``'no object'``).
        frame_rate: frames per second written to ``seqinfo.ini``.
        jpeg_quality: quality of written JPEG frames (1-100).
    """

    num_sequences: int = 4
    num_frames: int = 100
    image_size: int | tuple[int, int] = 192
    num_objects: int = 4
    appearance: str = "auto"
    appearance_pool: str = "train"
    domains: tuple[str, ...] = DOMAINS
    object_scale: tuple[float, float] = (0.22, 0.45)
    main_object_scale: tuple[float, float] | None = None
    scale_change: float = 0.25
    speed: tuple[float, float] = (0.005, 0.02)
    respawn_delay: tuple[int, int] = (0, 20)
    start_offset: int = 0
    camera_pan: float = 0.3
    camera_speed: float = 0.0
    camera_period: int = 0
    camera_shake: float = 0.0
    brightness: float = 0.0
    contrast: float = 1.0
    gamma: float = 1.0
    color_cast: tuple[float, float, float] = (1.0, 1.0, 1.0)
    lighting_jitter: float = 0.0
    downscale: float = 1.0
    motion_blur: int = 0
    noise_std: float = 0.0
    min_visibility: float = 0.1
    cls_min_visible_px: int = 64
    frame_rate: int = 30
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in (
            "num_sequences",
            "num_frames",
            "num_objects",
            "frame_rate",
            "jpeg_quality",
            "motion_blur",
            "cls_min_visible_px",
            "start_offset",
            "camera_period",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {v!r}")
            set_(self, name, int(v))
        for name in ("num_sequences", "num_frames", "frame_rate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_objects", "motion_blur", "cls_min_visible_px", "start_offset", "camera_period"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        size = self.image_size
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = (int(size), int(size))
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(s, (int, np.integer)) for s in size)
        ):
            raise TypeError(
                f"image_size must be an int or an (height, width) pair of ints, got {self.image_size!r}"
            )
        if min(size) < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size!r}")
        set_(self, "image_size", (int(size[0]), int(size[1])))
        if self.appearance not in APPEARANCES:
            raise ValueError(f"appearance must be one of {APPEARANCES}, got {self.appearance!r}")
        if self.appearance_pool not in APPEARANCE_POOLS:
            raise ValueError(
                f"appearance_pool must be one of {APPEARANCE_POOLS}, got {self.appearance_pool!r}"
            )
        domains = (self.domains,) if isinstance(self.domains, str) else tuple(self.domains)
        unknown = [d for d in domains if d not in DOMAINS]
        if not domains or unknown:
            raise ValueError(f"domains must be a non-empty subset of {DOMAINS}, got {self.domains!r}")
        set_(self, "domains", domains)
        set_(self, "object_scale", _pair(self.object_scale, "object_scale", 0.01, 1.0))
        if self.main_object_scale is not None:
            set_(self, "main_object_scale", _pair(self.main_object_scale, "main_object_scale", 0.01, 1.0))
        set_(self, "speed", _pair(self.speed, "speed", 0.0, 1.0))
        delay = _pair(self.respawn_delay, "respawn_delay", 0)
        set_(self, "respawn_delay", (int(delay[0]), int(delay[1])))
        cast = (
            tuple(float(c) for c in self.color_cast) if isinstance(self.color_cast, (tuple, list)) else None
        )
        if cast is None or len(cast) != 3 or min(cast) < 0:
            raise ValueError(f"color_cast must be three non-negative gains, got {self.color_cast!r}")
        set_(self, "color_cast", cast)
        checks = {
            "scale_change": (0.0, 2.0),
            "camera_pan": (0.0, 100.0),
            "camera_speed": (0.0, 100.0),
            "camera_shake": (0.0, 100.0),
            "brightness": (-1.0, 1.0),
            "lighting_jitter": (0.0, 1.0),
            "noise_std": (0.0, 255.0),
            "min_visibility": (0.0, 1.0),
        }
        for name, (lo, hi) in checks.items():
            v = float(getattr(self, name))
            if not lo <= v <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {getattr(self, name)!r}")
            set_(self, name, v)
        for name in ("contrast", "gamma"):
            v = float(getattr(self, name))
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
            set_(self, name, v)
        if not float(self.downscale) >= 1.0:
            raise ValueError(f"downscale must be >= 1, got {self.downscale!r}")
        set_(self, "downscale", float(self.downscale))

    @property
    def height(self) -> int:
        return self.image_size[0]  # type: ignore[index]

    @property
    def width(self) -> int:
        return self.image_size[1]  # type: ignore[index]

    def replace(self, **changes) -> SceneConfig:
        """A copy with some knobs changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def moving_camera(self) -> bool:
        """Whether the camera moves (``camera_speed`` or ``camera_shake`` is set)."""
        return self.camera_speed > 0 or self.camera_shake > 0

    def to_dict(self) -> dict:
        """JSON-ready dict of every knob (the moving-camera knobs only when set).

        The moving-camera knobs came after data had been cached under the
        hash of this dict; left at their defaults they are left out, so that
        data keeps its hash. ``SceneConfig(**cfg.to_dict()) == cfg`` holds either way.
        """
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        for name, default in CAMERA_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d


@dataclass
class SynthFrame:
    """One rendered frame and its annotations.

    Attributes:
        frame_id: 1-based frame number.
        image: uint8 (H, W, 3) RGB.
        boxes: float32 (K, 4) xyxy pixels (x2, y2 exclusive).
        labels: int64 (K,) 0-based classes.
        instance_ids: int64 (K,) 1-based identities (per sequence).
        visibility: float32 (K,) in [0, 1].
        ignore: bool (K,).
        visible_px: int64 (K,) visible silhouette pixels.
        cls_label: frame classification label (C = no object).
        id_map: int32 (H, W) identity shown at each pixel (0 = background),
            before degradations.
        meta: the sequence's knobs (:func:`sequence_meta`).
        camera_offset: float64 (2,) camera displacement ``(dx, dy)`` in
            pixels since the first frame: a point of the world at ``p`` in
            the first frame is at ``p - camera_offset`` in this one (zeros
            without a moving camera).
    """

    frame_id: int
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    instance_ids: np.ndarray
    visibility: np.ndarray
    ignore: np.ndarray
    visible_px: np.ndarray
    cls_label: int
    id_map: np.ndarray
    meta: dict = field(default_factory=dict)
    camera_offset: np.ndarray = field(default_factory=lambda: np.zeros(2))


def cls_class_names(classes: tuple[str, ...]) -> tuple[str, ...]:
    """Classification classes: the C object classes plus ``'no object'`` (index C)."""
    return (*classes, NO_OBJECT_CLASS_NAME)


def _seed_sequence(seed: int, seq_index: int, stream: int) -> np.random.SeedSequence:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(seq_index, bool) or not isinstance(seq_index, (int, np.integer)) or seq_index < 0:
        raise ValueError(f"seq_index must be a non-negative int, got {seq_index!r}")
    return np.random.SeedSequence([int(seed), int(seq_index), stream])


# ----------------------------------------------------------------------------- degradations
def _lighting_lut(
    brightness: float, contrast: float, gamma: float, cast: tuple[float, float, float]
) -> np.ndarray:
    """(256, 1, 3) uint8 lookup table: gamma, then contrast about 0.5, brightness, cast."""
    x = np.arange(256, dtype=np.float64) / 255.0
    y = (x**gamma - 0.5) * contrast + 0.5 + brightness
    lut = np.stack([y * g for g in cast], 1)
    return np.clip(lut * 255.0 + 0.5, 0, 255).astype(np.uint8)[:, None, :]


def _blur_kernel(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = math.cos(angle) * c, math.sin(angle) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return k / k.sum()


def sequence_meta(cfg: SceneConfig, seq_index: int, seed: int) -> dict:
    """The per-sequence scene knobs (domain and the jittered lighting values).

    Returns:
        dict with ``domain``, ``appearance`` (resolved), ``brightness``,
        ``contrast``, ``gamma``, ``color_cast``, ``downscale``,
        ``motion_blur``, ``noise_std``, ``blur_angle`` (radians) and
        ``start_frame`` (simulated frames before the first recorded one).
    """
    from mtmnv3.data.sprites import resolve_appearance

    rng = np.random.default_rng(_seed_sequence(seed, seq_index, SEED_STREAM_META))
    j = cfg.lighting_jitter
    jit = rng.uniform(-1, 1, 6) * j
    return {
        "domain": cfg.domains[seq_index % len(cfg.domains)],
        "appearance": resolve_appearance(cfg.appearance),
        "brightness": float(np.clip(cfg.brightness + 0.3 * jit[0], -1, 1)),
        "contrast": float(cfg.contrast * math.exp(0.5 * jit[1])),
        "gamma": float(cfg.gamma * math.exp(0.5 * jit[2])),
        "color_cast": [float(g * math.exp(0.3 * d)) for g, d in zip(cfg.color_cast, jit[3:6], strict=True)],
        "downscale": cfg.downscale,
        "motion_blur": cfg.motion_blur,
        "noise_std": cfg.noise_std,
        "blur_angle": float(rng.uniform(0, math.pi)),
        # Drawn last and only when enabled: sequences without an offset keep their draws.
        "start_frame": int(rng.integers(0, cfg.start_offset + 1)) if cfg.start_offset else 0,
    }


# ----------------------------------------------------------------------------- objects
@dataclass
class _Object:
    ident: int
    cls: int
    grey: np.ndarray
    mask: np.ndarray
    tint: np.ndarray
    depth: float
    t0: int
    pos0: np.ndarray
    vel: np.ndarray
    base_size: float
    scale_period: float
    scale_phase: float
    entered: bool = False
    cache_size: int = -1
    cache_rgb: np.ndarray | None = None
    cache_mask: np.ndarray | None = None

    def sprite(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if size != self.cache_size:
            g = cv2.resize(self.grey, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
            m = cv2.resize(self.mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
            shade = SHADE_MIN + (1 - SHADE_MIN) * g
            self.cache_rgb = (shade[..., None] * self.tint).astype(np.uint8)
            self.cache_mask = m
            self.cache_size = size
        assert self.cache_rgb is not None and self.cache_mask is not None
        return self.cache_rgb, self.cache_mask


class _Scene:
    """Spawns, moves and renders the objects of one sequence."""

    def __init__(self, cfg: SceneConfig, source: AppearanceSource, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.source = source
        self.rng = rng
        self.h, self.w = cfg.height, cfg.width
        self.side = min(self.h, self.w)
        self.next_id = 1
        self.slots: list[_Object | None] = [None] * cfg.num_objects
        self.wake: list[int] = [0] * cfg.num_objects
        for k in range(cfg.num_objects):
            self.slots[k] = self._spawn(0, inside=True, slot=k)

    def _spawn(self, t: int, inside: bool, slot: int = -1, view: tuple[int, int] = (0, 0)) -> _Object:
        """A new object at frame ``t``, placed in (or at the border of) the view whose
        top-left corner is at ``view`` in world pixels (the scene's objects live in the world)."""
        cfg, rng = self.cfg, self.rng
        cls = int(rng.integers(self.source.num_classes))
        grey, mask, _ = self.source.sample(cls, rng)
        hsv = np.array(
            [[[rng.integers(0, 180), rng.integers(*TINT_SATURATION), rng.integers(*TINT_VALUE)]]], np.uint8
        )
        tint = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        main = slot == 0 and cfg.main_object_scale is not None
        size = rng.uniform(*(cfg.main_object_scale if main else cfg.object_scale)) * self.side
        speed = rng.uniform(*cfg.speed) * self.side
        if inside:
            pos = np.array([rng.uniform(0.1, 0.9) * self.w, rng.uniform(0.1, 0.9) * self.h])
            angle = rng.uniform(0, 2 * math.pi)
        else:
            edge = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
            half = size / 2 + 1
            along_x, along_y = rng.uniform(0.1, 0.9) * self.w, rng.uniform(0.1, 0.9) * self.h
            pos, normal = [
                (np.array([-half, along_y]), 0.0),
                (np.array([self.w + half, along_y]), math.pi),
                (np.array([along_x, -half]), math.pi / 2),
                (np.array([along_x, self.h + half]), -math.pi / 2),
            ][edge]
            angle = normal + rng.uniform(-ENTER_ANGLE_SPREAD, ENTER_ANGLE_SPREAD)
            speed = max(speed, 1.0)  # an entering object must get in
        if view != (0, 0):
            pos = pos + np.array(view, np.float64)
        obj = _Object(
            ident=self.next_id,
            cls=cls,
            grey=grey,
            mask=mask,
            tint=tint,
            depth=float(rng.random()) + (1.0 if main else 0.0),  # the main subject is nearest
            t0=t,
            pos0=pos,
            vel=speed * np.array([math.cos(angle), math.sin(angle)]),
            base_size=size,
            scale_period=float(rng.uniform(40, 160)),
            scale_phase=float(rng.uniform(0, 2 * math.pi)),
            entered=inside,
        )
        self.next_id += 1
        return obj

    def _geometry(self, obj: _Object, t: int) -> tuple[int, int, int]:
        age = t - obj.t0
        log_scale = self.cfg.scale_change * math.sin(2 * math.pi * age / obj.scale_period + obj.scale_phase)
        size = max(2, int(round(obj.base_size * math.exp(log_scale))))
        cx, cy = obj.pos0 + obj.vel * age
        return int(round(cx - size / 2)), int(round(cy - size / 2)), size

    def step(self, t: int, view: tuple[int, int] = (0, 0)) -> list[tuple[_Object, int, int, int]]:
        """Advance slots to frame ``t`` (0-based) with the view's top-left corner at ``view``
        (world pixels); return (object, x0, y0, size) to draw, in image pixels."""
        active = []
        for k, obj in enumerate(self.slots):
            if obj is None:
                if t < self.wake[k]:
                    continue
                obj = self.slots[k] = self._spawn(t, inside=False, slot=k, view=view)
            x0, y0, s = self._geometry(obj, t)
            x0, y0 = x0 - view[0], y0 - view[1]
            inside = x0 < self.w and y0 < self.h and x0 + s > 0 and y0 + s > 0
            if inside:
                obj.entered = True
            elif obj.entered or t - obj.t0 > MAX_ENTER_FRAMES:
                self.slots[k] = None
                self.wake[k] = (
                    t + 1 + int(self.rng.integers(self.cfg.respawn_delay[0], self.cfg.respawn_delay[1] + 1))
                )
                continue
            if inside:
                active.append((obj, x0, y0, s))
        active.sort(key=lambda a: a[0].depth)  # far (small depth) first; near ones paint over
        return active


def _render(
    scene: _Scene, drawn, frame: np.ndarray, id_map: np.ndarray
) -> list[tuple[_Object, np.ndarray, int]]:
    """Paint objects far to near; return (object, full box, silhouette pixels) of those in view."""
    h, w = frame.shape[:2]
    out = []
    for obj, x0, y0, s in drawn:
        rgb, mask = obj.sprite(s)
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
        m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if rows.size == 0:
            continue
        frame[ya:yb, xa:xb][m] = rgb[ya - y0 : yb - y0, xa - x0 : xb - x0][m]
        id_map[ya:yb, xa:xb][m] = obj.ident
        box = np.array([xa + cols[0], ya + rows[0], xa + cols[-1] + 1, ya + rows[-1] + 1], np.float32)
        out.append((obj, box, int(mask.sum())))
    return out


def camera_path(cfg: SceneConfig, seq_index: int, seed: int, num_frames: int) -> np.ndarray:
    """The moving camera's view origin for frames ``0 .. num_frames - 1`` of the simulation.

    Returns:
        int64 (num_frames, 2) ``(x, y)`` world pixels of the image's top-left
        corner (all zeros without a moving camera): the pan (a steady one,
        or a sweep of period ``camera_period``, along a random direction)
        plus an independent shake per frame, rounded to whole pixels.
    """
    if not cfg.moving_camera:
        return np.zeros((num_frames, 2), np.int64)
    rng = np.random.default_rng(_seed_sequence(seed, seq_index, SEED_STREAM_CAMERA))
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    t = np.arange(num_frames, dtype=np.float64)
    if cfg.camera_period:
        w = 2 * math.pi / cfg.camera_period
        travel = cfg.camera_speed * np.sin(w * t) / w
    else:
        travel = cfg.camera_speed * t
    shake = rng.uniform(-cfg.camera_shake, cfg.camera_shake, (num_frames, 2))
    return np.round(travel[:, None] * direction + shake).astype(np.int64)


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Indices mirrored into ``[0, size)`` without repeating the edge (OpenCV's BORDER_REFLECT_101)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def _background_view(background: np.ndarray, x: int, y: int, h: int, w: int) -> np.ndarray:
    """The (h, w) window at (x, y) of the background mirrored without end (a world to pan over)."""
    bh, bw = background.shape[:2]
    if 0 <= x and x + w <= bw and 0 <= y and y + h <= bh:
        return background[y : y + h, x : x + w].copy()
    rows = _reflect(np.arange(y, y + h), bh)
    cols = _reflect(np.arange(x, x + w), bw)
    return background[rows[:, None], cols[None, :]]


def noisy_detections(
    boxes: np.ndarray,
    rng: np.random.Generator,
    jitter: float = 0.05,
    drop: float = 0.1,
    score_range: tuple[float, float] = (0.5, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections made from ground-truth boxes, for exercising trackers without a model.

    Each box is dropped with probability ``drop`` (a missed detection); the
    others get Gaussian noise on every side (standard deviation ``jitter``
    times the box's width for x, height for y) and a score drawn uniformly
    from ``score_range``.

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2``.
        rng: the random stream (the caller's, for reproducible runs).
        jitter: side noise as a fraction of the box size (>= 0).
        drop: probability of dropping a box, in [0, 1].
        score_range: (low, high) scores, within [0, 1].

    Returns:
        ``(boxes, scores, kept)``: float64 (M, 4) boxes with positive width
        and height, float64 (M,) scores and the int64 (M,) indices of the
        input boxes kept.

    Raises:
        ValueError: If an argument is out of range or ``boxes`` is not (N, 4).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    if not jitter >= 0:
        raise ValueError(f"jitter must be >= 0, got {jitter!r}")
    if not 0 <= drop <= 1:
        raise ValueError(f"drop must be in [0, 1], got {drop!r}")
    lo, hi = _pair(score_range, "score_range", 0.0, 1.0)
    n = len(boxes)
    keep = rng.random(n) >= drop
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    noisy = boxes + rng.standard_normal((n, 4)) * jitter * size
    scores = rng.uniform(lo, hi, n)
    noisy[:, 2] = np.maximum(noisy[:, 2], noisy[:, 0] + 1.0)
    noisy[:, 3] = np.maximum(noisy[:, 3], noisy[:, 1] + 1.0)
    kept = np.flatnonzero(keep)
    return noisy[kept], scores[kept], kept.astype(np.int64)


def generate_sequence(cfg: SceneConfig, seq_index: int, seed: int) -> Iterator[SynthFrame]:
    """Render one sequence, frame by frame.

    Deterministic: the same (cfg, seq_index, seed) gives identical frames.

    Args:
        cfg: scene knobs.
        seq_index: index of the sequence (selects the domain and the random stream).
        seed: base seed.

    Yields:
        ``cfg.num_frames`` :class:`SynthFrame` objects, frame_id 1..num_frames.
    """
    meta = sequence_meta(cfg, seq_index, seed)
    source = AppearanceSource(meta["appearance"], cfg.appearance_pool)
    rng = np.random.default_rng(_seed_sequence(seed, seq_index, SEED_STREAM_SCENE))
    noise_rng = np.random.default_rng(_seed_sequence(seed, seq_index, SEED_STREAM_DEGRADE))
    h, w = cfg.height, cfg.width
    margin = max(1, int(PAN_MARGIN_FRAC * min(h, w)))
    # Backgrounds draw from their own stream: changing the domain keeps the same objects and motion.
    bg_rng = np.random.default_rng(_seed_sequence(seed, seq_index, SEED_STREAM_BACKGROUND))
    background = make_background(meta["domain"], h + 2 * margin, w + 2 * margin, bg_rng)
    pan_angle = rng.uniform(0, 2 * math.pi)
    pan_start = rng.uniform(0, 2 * margin, 2)
    scene = _Scene(cfg, source, rng)
    num_classes = source.num_classes
    lut = _lighting_lut(meta["brightness"], meta["contrast"], meta["gamma"], tuple(meta["color_cast"]))
    blur = _blur_kernel(cfg.motion_blur, meta["blur_angle"]) if cfg.motion_blur > 1 else None
    small = (max(1, round(w / cfg.downscale)), max(1, round(h / cfg.downscale)))
    start = meta["start_frame"]
    views = camera_path(cfg, seq_index, seed, start + cfg.num_frames)
    for t in range(start):  # simulate (no rendering) up to the first recorded frame
        scene.step(t, tuple(views[t]))
    for t in range(start, start + cfg.num_frames):
        # Step 1: backdrop drift (triangle wave inside the background margin) and the moving camera.
        travel = pan_start + cfg.camera_pan * t * np.array([math.cos(pan_angle), math.sin(pan_angle)])
        ox, oy = (int(2 * margin - abs(v % (4 * margin) - 2 * margin)) for v in travel)
        view = (int(views[t, 0]), int(views[t, 1]))
        frame = _background_view(background, ox + view[0], oy + view[1], h, w)
        id_map = np.zeros((h, w), np.int32)
        # Step 2: objects, far to near.
        shown = _render(scene, scene.step(t, view), frame, id_map)
        visible = np.bincount(id_map.ravel(), minlength=scene.next_id)
        shown.sort(key=lambda item: item[0].ident)
        k = len(shown)
        boxes = np.stack([b for _, b, _ in shown]) if k else np.zeros((0, 4), np.float32)
        ids = np.array([o.ident for o, _, _ in shown], np.int64)
        labels = np.array([o.cls for o, _, _ in shown], np.int64)
        vis_px = visible[ids].astype(np.int64) if k else np.zeros(0, np.int64)
        area = np.array([a for _, _, a in shown], np.float64)
        visibility = (vis_px / np.maximum(area, 1)).astype(np.float32) if k else np.zeros(0, np.float32)
        # Step 3: the frame's classification label (largest visible area; ties to the lower id).
        cls_label = num_classes
        if k and vis_px.max() >= cfg.cls_min_visible_px:
            cls_label = int(labels[int(np.argmax(vis_px))])
        # Step 4: degradations.
        frame = cv2.LUT(frame, lut)
        if blur is not None:
            frame = cv2.filter2D(frame, -1, blur, borderType=cv2.BORDER_REFLECT)
        if cfg.downscale > 1:
            frame = cv2.resize(
                cv2.resize(frame, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR
            )
        if cfg.noise_std > 0:
            noise = noise_rng.standard_normal(frame.shape, dtype=np.float32) * cfg.noise_std
            frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
        yield SynthFrame(
            frame_id=t - start + 1,
            image=frame,
            boxes=boxes.astype(np.float32),
            labels=labels,
            instance_ids=ids,
            visibility=visibility,
            ignore=visibility < cfg.min_visibility,
            visible_px=vis_px,
            cls_label=cls_label,
            id_map=id_map,
            meta=meta,
            camera_offset=(views[t] - views[start]).astype(np.float64),
        )
