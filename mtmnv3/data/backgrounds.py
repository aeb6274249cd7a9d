"""Background textures of the scene generator, one family per lighting/texture domain."""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["DOMAINS", "make_background"]

#: The background families; robust training groups scenes by them.
DOMAINS = ("smooth", "stripes", "checker", "blobs", "speckle")
#: Backgrounds keep their saturation below this (objects stay the vivid part).
BACKGROUND_MAX_SATURATION = 0.55
SMOOTH_OCTAVES = 4
BLOB_COUNT_PER_MEGAPIXEL = 400


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32 RGB in [0, 1] with limited saturation."""
    hsv = np.stack(
        [rng.uniform(0, 180, n), rng.uniform(0, BACKGROUND_MAX_SATURATION * 255, n), rng.uniform(40, 230, n)],
        1,
    ).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255.0


def _two_tone(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = _random_colors(rng, 2)
    return c[0] * (1 - t[..., None]) + c[1] * t[..., None]


def make_background(domain: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A texture of one domain family.

    Args:
        domain: one of ``DOMAINS``.
        height, width: size in pixels.
        rng: random generator.

    Returns:
        uint8 (height, width, 3) RGB.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    h, w = height, width
    if domain == "smooth":
        acc = np.zeros((h, w, 3), np.float32)
        for octave in range(SMOOTH_OCTAVES):
            cells = 2 ** (octave + 1)
            grid = rng.random((cells + 1, cells + 1, 3)).astype(np.float32)
            acc += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / 2**octave
        acc = (acc - acc.min()) / max(float(np.ptp(acc)), 1e-6)
        c = _random_colors(rng, 2)
        img = c[0] * (1 - acc) + c[1] * acc
    elif domain == "stripes":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(2 * math.pi / period * (xx * math.cos(theta) + yy * math.sin(theta)))
        img = _two_tone(t, rng)
    elif domain == "checker":
        cell = int(rng.integers(8, 32))
        yy, xx = np.mgrid[0:h, 0:w]
        t = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
        img = _two_tone(cv2.GaussianBlur(t, (3, 3), 0), rng)
    elif domain == "blobs":
        img = np.empty((h, w, 3), np.float32)
        img[:] = _random_colors(rng, 1)[0]
        n = max(4, int(BLOB_COUNT_PER_MEGAPIXEL * h * w / 1e6))
        colors = _random_colors(rng, n)
        for i in range(n):
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(3, max(4, w // 8))), int(rng.integers(3, max(4, h // 8))))
            cv2.ellipse(
                img, center, axes, float(rng.uniform(0, 180)), 0, 360, colors[i].tolist(), -1, cv2.LINE_AA
            )
    else:  # speckle
        small = rng.random((max(1, h // 3), max(1, w // 3))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        img = _two_tone(cv2.GaussianBlur(t, (3, 3), 0), rng)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
