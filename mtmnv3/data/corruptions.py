"""The shift suite: eleven image-corruption families with five severities each.

The families follow the common-corruption benchmark of Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019, ImageNet-C), extended with the lighting and
resolution shifts that edge cameras meet (darkness, gamma, colour cast, low
resolution) and with parameters adapted to 128-320 px frames instead of
224 px ImageNet crops. Every family's parameters live in one table per
family, :data:`SEVERITY_TABLES` (severity ``s`` uses entry ``s - 1``):

====================  =================================  ==========================================
family                parameter (severity 1 .. 5)        meaning
====================  =================================  ==========================================
``brightness``        0.1, 0.2, 0.3, 0.4, 0.5            added to HSV value (ImageNet-C's values)
``darkness``          0.5, 1.0, 1.5, 2.0, 2.5            exposure cut in stops (gain ``2**-s``)
``contrast``          0.4, 0.3, 0.2, 0.1, 0.05           contrast kept around the image mean
                                                         (ImageNet-C's values)
``gamma``             1.4, 1.8, 2.2, 2.6, 3.0            tone-curve exponent; the direction
                                                         (``g`` or ``1/g``) is drawn per video
``color_cast``        0.1, 0.2, 0.3, 0.45, 0.6           log channel-gain magnitude of a white
                                                         balance error; hue direction per video
``low_resolution``    1.5, 2, 3, 4, 6                    down-sampling factor (area), then
                                                         bilinear up-sampling to the input size
``defocus_blur``      1.5, 2.5, 3.5, 5.0, 7.0            disk radius in px (ImageNet-C uses 3-10
                                                         px at 224 px)
``motion_blur``       3, 5, 8, 11, 15                    streak length in px; angle per video
``gaussian_noise``    0.03, 0.05, 0.08, 0.12, 0.18       std in [0, 1] units (ImageNet-C starts at
                                                         0.08; severity 1 here is sensor noise)
``shot_noise``        60, 25, 12, 5, 3                   photons per unit intensity (Poisson,
                                                         ImageNet-C's values)
``jpeg_compression``  30, 20, 15, 10, 7                  JPEG quality (ImageNet-C: 25 .. 7)
====================  =================================  ==========================================

Randomness and video consistency. A corruption is a function of an explicit
``seed``. The random parameters that *define* the corruption of a video (the
colour-cast hue, the motion-blur angle, the gamma direction) are drawn once
per ``(seed, family, video_id)``, so every frame of a video sees the same
camera fault; per-pixel noise is drawn per ``(seed, family, video_id,
frame_id)``. A frame's result therefore does not depend on the batch it was
corrupted in, and runs are reproducible.

All arithmetic is vectorised over the batch with torch (``conv2d`` for the
blurs, ``interpolate`` for the resolution change); JPEG goes through OpenCV
image by image, and so does defocus blur on the CPU (``cv2.filter2D``, 2-5x
faster than a depthwise ``conv2d`` with its large disk kernels).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CORRUPTIONS",
    "NUM_SEVERITIES",
    "PER_FRAME_NOISE",
    "PER_VIDEO_RANDOM",
    "SEVERITY_TABLES",
    "corrupt",
    "severity_parameter",
]

NUM_SEVERITIES = 5
MAX_PIXEL = 255.0
#: Denominator guard for the HSV-value scaling of ``brightness``.
VALUE_EPS = 1e-6
#: Supersampling factor per axis for the anti-aliased defocus disk.
DISK_SUPERSAMPLE = 8
#: Half-width (px) of the anti-aliased motion-blur streak.
STREAK_HALF_WIDTH = 0.5

SEVERITY_TABLES: dict[str, tuple[float, ...]] = {
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "darkness": (0.5, 1.0, 1.5, 2.0, 2.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "gamma": (1.4, 1.8, 2.2, 2.6, 3.0),
    "color_cast": (0.1, 0.2, 0.3, 0.45, 0.6),
    "low_resolution": (1.5, 2.0, 3.0, 4.0, 6.0),
    "defocus_blur": (1.5, 2.5, 3.5, 5.0, 7.0),
    "motion_blur": (3.0, 5.0, 8.0, 11.0, 15.0),
    "gaussian_noise": (0.03, 0.05, 0.08, 0.12, 0.18),
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    "jpeg_compression": (30.0, 20.0, 15.0, 10.0, 7.0),
}
#: Families whose defining parameters are drawn once per video.
PER_VIDEO_RANDOM = frozenset({"gamma", "color_cast", "motion_blur"})
#: Families that draw fresh noise for every frame.
PER_FRAME_NOISE = frozenset({"gaussian_noise", "shot_noise"})

# Orthonormal basis of the chroma plane (orthogonal to the grey axis (1, 1, 1)).
_CHROMA_U = np.array([2.0, -1.0, -1.0]) / math.sqrt(6.0)
_CHROMA_V = np.array([0.0, 1.0, -1.0]) / math.sqrt(2.0)


# ---- random streams --------------------------------------------------------------------
def _key(value: int) -> list[int]:
    """A signed int as non-negative SeedSequence entropy words."""
    return [0 if value >= 0 else 1, abs(int(value))]


@dataclass(frozen=True)
class _Streams:
    """Deterministic random streams of one corruption call.

    Attributes:
        seed: the user's seed.
        name: the corruption family (separates the families' streams).
        video_ids: ``(N,)`` video id per image.
        frame_ids: ``(N,)`` frame id per image.
    """

    seed: int
    name: str
    video_ids: np.ndarray
    frame_ids: np.ndarray

    def _entropy(self, *ids: int) -> list[int]:
        words = [self.seed, zlib.crc32(self.name.encode())]
        for i in ids:
            words += _key(i)
        return words

    def per_video(self, draw: Callable[[np.random.Generator], Any]) -> list[Any]:
        """``draw(rng)`` once per distinct video, returned per image (length N)."""
        cache: dict[int, Any] = {}
        out = []
        for vid in self.video_ids.tolist():
            if vid not in cache:
                cache[vid] = draw(np.random.default_rng(np.random.SeedSequence(self._entropy(vid))))
            out.append(cache[vid])
        return out

    def frame_generator(self, index: int) -> torch.Generator:
        """A CPU torch generator for image ``index``, seeded by (seed, family, video, frame)."""
        state = np.random.SeedSequence(
            self._entropy(int(self.video_ids[index]), int(self.frame_ids[index]))
        ).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state >> np.uint64(1)))


# ---- helpers -------------------------------------------------------------------------------
def _filter2d(x: Tensor, kernels: Tensor) -> Tensor:
    """Depthwise 2-D filtering with replicate padding.

    Args:
        x: ``(N, C, H, W)`` float images.
        kernels: ``(k, k)`` one kernel for all, or ``(N, k, k)`` one per image (odd k).

    Returns:
        ``(N, C, H, W)`` filtered images.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    if kernels.dim() == 2 and x.device.type == "cpu" and x.dtype == torch.float32:
        return _filter2d_opencv(x, kernels)
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    kernels = kernels.to(x)
    if kernels.dim() == 2:
        return F.conv2d(xp, kernels.expand(c, 1, k, k), groups=c)
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def _filter2d_opencv(x: Tensor, kernel: Tensor) -> Tensor:
    """:func:`_filter2d` with one kernel for all images, by OpenCV on the CPU.

    ``cv2.filter2D`` (replicate border) is faster than a depthwise ``conv2d``
    with the large disk kernels of defocus blur. Up to 9x9 it computes the
    same sums (equal results); from 11x11 it filters through the DFT, which
    moves a rare pixel by one grey level after rounding (the parity test in
    ``tests/studies/test_robustness_library.py`` bounds both).
    """
    hwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(hwc)
    k = np.ascontiguousarray(kernel.detach().cpu().numpy(), dtype=np.float32)
    for i in range(len(hwc)):
        cv2.filter2D(hwc[i], -1, k, dst=out[i], borderType=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _disk_kernel(radius: float) -> Tensor:
    """Anti-aliased disk (pixel coverage by supersampling), normalised to sum 1."""
    half = math.ceil(radius)
    s = DISK_SUPERSAMPLE
    offs = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    fine = (grid[:, None] + offs[None, :]).reshape(-1)  # supersampled coordinates
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2 <= radius**2).double()
    k = inside.reshape(2 * half + 1, s, 2 * half + 1, s).mean(dim=(1, 3))
    return (k / k.sum()).float()


def _streak_kernels(length: float, angles: Tensor) -> Tensor:
    """Anti-aliased centred line segments, one per angle.

    Args:
        length: streak length in px.
        angles: ``(N,)`` angles in radians.

    Returns:
        ``(N, k, k)`` kernels normalised to sum 1.
    """
    half = math.ceil(length / 2)
    g = torch.arange(-half, half + 1, dtype=torch.float32)
    py, px = torch.meshgrid(g, g, indexing="ij")
    dx, dy = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    t = (px * dx + py * dy).clamp(-length / 2, length / 2)
    dist = torch.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)
    k = (1.0 + STREAK_HALF_WIDTH - dist).clamp(0.0, 1.0)
    return k / k.sum(dim=(1, 2), keepdim=True)


# ---- the families (float32 (N, 3, H, W) in [0, 255] -> same) ---------------------------------
def _brightness(x: Tensor, c: float, streams: _Streams) -> Tensor:
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + c * MAX_PIXEL).clamp(max=MAX_PIXEL)
    scaled = x * (new_value / value.clamp(min=VALUE_EPS))
    return torch.where(value > 0, scaled, new_value.expand_as(x))


def _darkness(x: Tensor, stops: float, streams: _Streams) -> Tensor:
    return x * 2.0**-stops


def _contrast(x: Tensor, c: float, streams: _Streams) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def _gamma(x: Tensor, g: float, streams: _Streams) -> Tensor:
    signs = streams.per_video(lambda rng: 1.0 if rng.random() < 0.5 else -1.0)
    exponent = torch.tensor([g**s for s in signs], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    return MAX_PIXEL * (x / MAX_PIXEL).pow(exponent)


def _color_cast(x: Tensor, strength: float, streams: _Streams) -> Tensor:
    angles = streams.per_video(lambda rng: rng.uniform(0.0, 2.0 * math.pi))
    dirs = np.stack([math.cos(a) * _CHROMA_U + math.sin(a) * _CHROMA_V for a in angles])
    gains = torch.from_numpy(np.exp(strength * dirs)).to(x).view(-1, 3, 1, 1)
    return x * gains


def _low_resolution(x: Tensor, factor: float, streams: _Streams) -> Tensor:
    h, w = x.shape[-2:]
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    down = F.interpolate(x, size=small, mode="area")
    return F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)


def _defocus_blur(x: Tensor, radius: float, streams: _Streams) -> Tensor:
    return _filter2d(x, _disk_kernel(radius))


def _motion_blur(x: Tensor, length: float, streams: _Streams) -> Tensor:
    angles = torch.tensor(streams.per_video(lambda rng: rng.uniform(0.0, math.pi)), dtype=torch.float32)
    return _filter2d(x, _streak_kernels(length, angles))


def _gaussian_noise(x: Tensor, std: float, streams: _Streams) -> Tensor:
    shape = x.shape[1:]
    noise = torch.stack([torch.randn(shape, generator=streams.frame_generator(i)) for i in range(len(x))])
    return x + noise.to(x) * (std * MAX_PIXEL)


def _shot_noise(x: Tensor, photons: float, streams: _Streams) -> Tensor:
    rates = (x / MAX_PIXEL * photons).cpu()
    counts = torch.stack(
        [torch.poisson(rates[i], generator=streams.frame_generator(i)) for i in range(len(x))]
    )
    return counts.to(x) / photons * MAX_PIXEL


def _jpeg_compression(x: Tensor, quality: float, streams: _Streams) -> Tensor:
    hwc = x.round().clamp(0, MAX_PIXEL).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    out = []
    for img in hwc:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), params)  # OpenCV wants BGR
        if not ok:
            raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {img.shape}")
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x)


_KERNELS: dict[str, Callable[[Tensor, float, _Streams], Tensor]] = {
    "brightness": _brightness,
    "darkness": _darkness,
    "contrast": _contrast,
    "gamma": _gamma,
    "color_cast": _color_cast,
    "low_resolution": _low_resolution,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "jpeg_compression": _jpeg_compression,
}
assert set(_KERNELS) == set(SEVERITY_TABLES), "every family needs a severity table"


# ---- validation and layout ----------------------------------------------------------------------
def _check_name(name: str) -> None:
    if name not in _KERNELS:
        raise ValueError(f"unknown corruption {name!r}; known corruptions: {sorted(_KERNELS)}")


def severity_parameter(name: str, severity: int) -> float:
    """The table parameter of ``name`` at ``severity`` (1..5); see :data:`SEVERITY_TABLES`."""
    _check_name(name)
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not (1 <= severity <= NUM_SEVERITIES)
    ):
        raise ValueError(f"severity must be an int in 1..{NUM_SEVERITIES}, got {severity!r}")
    return SEVERITY_TABLES[name][int(severity) - 1]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _to_nchw(images: Tensor | np.ndarray) -> tuple[Tensor, Callable[[Tensor], Tensor | np.ndarray]]:
    """Validate ``images`` and return them as uint8 NCHW plus a function restoring the layout."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise ValueError(
                f"numpy images must be uint8 (H, W, 3) or (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        single = images.ndim == 3
        batch = torch.from_numpy(np.ascontiguousarray(images[None] if single else images)).permute(0, 3, 1, 2)

        def restore_np(out: Tensor) -> np.ndarray:
            arr = out.permute(0, 2, 3, 1).contiguous().numpy()
            return arr[0] if single else arr

        return batch, restore_np
    if isinstance(images, Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"tensor images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        return images, lambda out: out
    raise TypeError(f"images must be a torch.Tensor or numpy.ndarray, got {type(images).__name__}")


def _ids(values: Sequence[int] | np.ndarray | Tensor | None, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(values, Tensor):
        values = values.cpu().numpy()
    arr = np.asarray(values)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be {n} integers (one per image), got {values!r}")
    return arr.astype(np.int64)


def corrupt(
    images: Tensor | np.ndarray,
    name: str,
    severity: int,
    seed: int = 0,
    video_ids: Sequence[int] | np.ndarray | Tensor | None = None,
    frame_ids: Sequence[int] | np.ndarray | Tensor | None = None,
) -> Tensor | np.ndarray:
    """Apply one corruption family at one severity to a batch of frames.

    Args:
        images: uint8 ``(N, 3, H, W)`` tensor (any device), or uint8 numpy
            ``(H, W, 3)`` / ``(N, H, W, 3)`` RGB.
        name: a family of :data:`CORRUPTIONS`.
        severity: 1 (mild) .. 5 (severe).
        seed: non-negative base seed of every random draw.
        video_ids: ``(N,)`` video of each image; the corruption's defining
            random parameters are drawn once per video. Default: each image
            is its own video (``0 .. N-1``).
        frame_ids: ``(N,)`` frame of each image; noise is drawn per
            (video, frame). Default: the position in the batch.

    Returns:
        The corrupted images, same type, layout, shape, dtype and device.

    Raises:
        ValueError: unknown name (the message lists the known ones), severity
            outside 1..5, bad dtype/shape, ids of the wrong length, bad seed.
        TypeError: images neither a tensor nor an ndarray.
    """
    param = severity_parameter(name, severity)
    seed = _check_seed(seed)
    batch, restore = _to_nchw(images)
    n = batch.shape[0]
    streams = _Streams(seed, name, _ids(video_ids, n, "video_ids"), _ids(frame_ids, n, "frame_ids"))
    if n == 0:
        return restore(batch.clone())
    out = _KERNELS[name](batch.float(), param, streams)
    return restore(out.round_().clamp_(0.0, MAX_PIXEL).to(torch.uint8))


def _make_public(name: str) -> Callable[..., Tensor | np.ndarray]:
    def apply(
        images: Tensor | np.ndarray,
        severity: int,
        seed: int = 0,
        video_ids: Sequence[int] | np.ndarray | Tensor | None = None,
        frame_ids: Sequence[int] | np.ndarray | Tensor | None = None,
    ) -> Tensor | np.ndarray:
        return corrupt(images, name, severity, seed, video_ids, frame_ids)

    apply.__name__ = name
    apply.__qualname__ = name
    apply.__doc__ = (
        f"Corruption ``{name}`` (parameters per severity: {SEVERITY_TABLES[name]}); "
        "arguments as :func:`corrupt` without ``name``."
    )
    return apply


#: Family name -> ``fn(images, severity, seed=0, video_ids=None, frame_ids=None)``.
CORRUPTIONS: dict[str, Callable[..., Tensor | np.ndarray]] = {name: _make_public(name) for name in _KERNELS}
