"""Object appearances for the scene generator.

Two sources, same interface (grey sprite + binary mask per class):

* ``'fashion_mnist'``: real Fashion-MNIST images (28x28) from the installed
  idx files; pools ``'train'`` (the 60k training images), ``'val'`` (first
  half of the 10k test images) and ``'test'`` (second half), so held-out
  splits never show an object image seen in training.
* ``'sprites'``: procedural shapes drawn with OpenCV, with random rotation,
  aspect and interior texture per instance.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mtmnv3.data.fashion_mnist import FASHION_MNIST_CLASSES, find_fashion_mnist, load_fashion_mnist

__all__ = [
    "APPEARANCES",
    "APPEARANCE_POOLS",
    "SPRITE_CLASSES",
    "AppearanceSource",
    "resolve_appearance",
]

APPEARANCES = ("auto", "fashion_mnist", "sprites")
APPEARANCE_POOLS = ("train", "val", "test")
SPRITE_CLASSES = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "star",
    "diamond",
    "hexagon",
    "crescent",
    "arrow",
)
#: Grey level above which a Fashion-MNIST pixel belongs to the object.
FMNIST_MASK_THRESHOLD = 12
#: Side of the canvas procedural sprites are drawn on (pixels).
SPRITE_CANVAS = 64
SPRITE_MAX_ROTATION_DEG = 25.0
SPRITE_ASPECT_JITTER = 0.2
SPRITE_MIN_GREY = 150
MASK_CLOSE_KERNEL = 3


def resolve_appearance(appearance: str) -> str:
    """Map ``'auto'`` to ``'fashion_mnist'`` when its files exist, else ``'sprites'``."""
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
    if appearance == "auto":
        return "fashion_mnist" if find_fashion_mnist("train") and find_fashion_mnist("test") else "sprites"
    return appearance


def _close_mask(mask: np.ndarray) -> np.ndarray:
    kernel = np.ones((MASK_CLOSE_KERNEL, MASK_CLOSE_KERNEL), np.uint8)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)


def _regular_polygon(n: int, radius: float, center: float, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([center + radius * np.cos(angles), center + radius * np.sin(angles)], 1)


def _draw_shape(cls: int, canvas: np.ndarray) -> None:
    """Draw class ``cls`` filled with 255 on a square canvas (in place)."""
    s = canvas.shape[0]
    c = s / 2
    r = s * 0.45
    poly: np.ndarray | None = None
    name = SPRITE_CLASSES[cls]
    if name == "circle":
        cv2.circle(canvas, (int(c), int(c)), int(r), 255, -1, cv2.LINE_AA)
    elif name == "square":
        poly = np.array(
            [
                [c - r * 0.85, c - r * 0.85],
                [c + r * 0.85, c - r * 0.85],
                [c + r * 0.85, c + r * 0.85],
                [c - r * 0.85, c + r * 0.85],
            ]
        )
    elif name == "triangle":
        poly = _regular_polygon(3, r, c, -math.pi / 2)
    elif name == "ring":
        cv2.circle(canvas, (int(c), int(c)), int(r), 255, -1, cv2.LINE_AA)
        cv2.circle(canvas, (int(c), int(c)), int(r * 0.5), 0, -1, cv2.LINE_AA)
    elif name == "cross":
        w = r * 0.35
        cv2.rectangle(canvas, (int(c - w), int(c - r)), (int(c + w), int(c + r)), 255, -1)
        cv2.rectangle(canvas, (int(c - r), int(c - w)), (int(c + r), int(c + w)), 255, -1)
    elif name == "star":
        outer = _regular_polygon(5, r, c, -math.pi / 2)
        inner = _regular_polygon(5, r * 0.42, c, -math.pi / 2 + math.pi / 5)
        poly = np.stack([outer, inner], 1).reshape(-1, 2)
    elif name == "diamond":
        poly = np.array([[c, c - r], [c + r * 0.6, c], [c, c + r], [c - r * 0.6, c]])
    elif name == "hexagon":
        poly = _regular_polygon(6, r, c)
    elif name == "crescent":
        cv2.circle(canvas, (int(c), int(c)), int(r), 255, -1, cv2.LINE_AA)
        cv2.circle(canvas, (int(c + r * 0.45), int(c - r * 0.1)), int(r * 0.8), 0, -1, cv2.LINE_AA)
    elif name == "arrow":
        poly = np.array(
            [
                [c - r, c - r * 0.25],
                [c + r * 0.1, c - r * 0.25],
                [c + r * 0.1, c - r * 0.7],
                [c + r, c],
                [c + r * 0.1, c + r * 0.7],
                [c + r * 0.1, c + r * 0.25],
                [c - r, c + r * 0.25],
            ]
        )
    if poly is not None:
        cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], 255, cv2.LINE_AA)


class AppearanceSource:
    """Draws (grey sprite, mask) pairs of a given class.

    Args:
        appearance: ``'fashion_mnist'``, ``'sprites'`` or ``'auto'``.
        pool: ``'train'``, ``'val'`` or ``'test'`` (disjoint image pools).

    Attributes:
        kind: the resolved appearance.
        classes: class names (length C).
    """

    def __init__(self, appearance: str = "auto", pool: str = "train") -> None:
        if pool not in APPEARANCE_POOLS:
            raise ValueError(f"appearance pool must be one of {APPEARANCE_POOLS}, got {pool!r}")
        self.kind = resolve_appearance(appearance)
        self.pool = pool
        self._images: np.ndarray | None = None
        self._by_class: list[np.ndarray] = []
        if self.kind == "fashion_mnist":
            self.classes: tuple[str, ...] = FASHION_MNIST_CLASSES
            found = find_fashion_mnist("train" if pool == "train" else "test")
            if found is None:
                raise FileNotFoundError(
                    "appearance 'fashion_mnist' needs the Fashion-MNIST idx files "
                    "(Debian package dataset-fashion-mnist); use appearance='sprites' or 'auto'"
                )
            images, labels = load_fashion_mnist(*found)
            idx = np.arange(len(labels))
            if pool != "train":
                half = len(labels) // 2
                idx = idx[:half] if pool == "val" else idx[half:]
            self._images = images
            self._by_class = [idx[labels[idx] == c] for c in range(len(self.classes))]
            empty = [self.classes[c] for c, members in enumerate(self._by_class) if members.size == 0]
            if empty:
                raise ValueError(f"Fashion-MNIST pool {pool!r} has no images of classes {empty}")
        else:
            self.classes = SPRITE_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sample(self, cls: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
        """One instance of class ``cls``.

        Returns:
            grey uint8 (S, S), mask bool (S, S) and a source tag (image index
            or ``'sprite'``).
        """
        if not 0 <= cls < self.num_classes:
            raise ValueError(f"class index must be in [0, {self.num_classes}), got {cls}")
        if self.kind == "fashion_mnist":
            assert self._images is not None
            members = self._by_class[cls]
            i = int(members[rng.integers(len(members))])
            grey = np.asarray(self._images[i])
            return grey, _close_mask(grey > FMNIST_MASK_THRESHOLD), f"fashion_mnist:{i}"
        return (*self._procedural(cls, rng), "sprite")

    def _procedural(self, cls: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = SPRITE_CANVAS
        canvas = np.zeros((s, s), np.uint8)
        _draw_shape(cls, canvas)
        # Random aspect and rotation about the centre.
        aspect = 1.0 + rng.uniform(-SPRITE_ASPECT_JITTER, SPRITE_ASPECT_JITTER)
        angle = rng.uniform(-SPRITE_MAX_ROTATION_DEG, SPRITE_MAX_ROTATION_DEG)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, 1.0)
        m[0, :2] *= aspect
        m[0, 2] += (1 - aspect) * s / 2
        canvas = cv2.warpAffine(canvas, m, (s, s), flags=cv2.INTER_LINEAR)
        mask = canvas > 127
        # Interior texture: a random grating between SPRITE_MIN_GREY and 255.
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        theta = rng.uniform(0, math.pi)
        freq = rng.uniform(0.1, 0.4)
        wave = 0.5 + 0.5 * np.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)))
        grey = (SPRITE_MIN_GREY + (255 - SPRITE_MIN_GREY) * wave).astype(np.uint8)
        grey[~mask] = 0
        return grey, mask
