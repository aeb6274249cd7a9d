"""Camera-motion compensation (CMC): one global image motion per frame, applied to every track.

A moving or shaking camera moves every object in the image by the same
global motion, which a constant-velocity Kalman filter cannot predict: the
predicted boxes then miss their detections and tracks break or swap. As in
BoT-SORT's global motion compensation (Aharon et al., "BoT-SORT: Robust
Associations Multi-Pedestrian Tracking", 2022), :class:`CameraMotion`
estimates, on a downscaled grey copy of each frame, the 2x3 affine warp that
maps the previous frame onto the current one, and the tracker moves every
track's Kalman state by it (:meth:`~mtmnv3.tracking.KalmanFilterXYAH.warp`)
before association.

Methods:

* ``'sparse_flow'`` (default): corners (``cv2.goodFeaturesToTrack``) of the
  previous frame outside the detection boxes, followed into the current
  frame by pyramidal Lucas-Kanade optical flow, and a rotation + uniform
  scale + translation fitted to them with RANSAC
  (``cv2.estimateAffinePartial2D``); the moving objects' points are outliers.
* ``'ecc'``: a Euclidean warp maximising the enhanced correlation coefficient
  between the two frames (``cv2.findTransformECC``, BoT-SORT's default);
  slower, and it sees the whole frame, objects included.

When the estimate fails (a flat image, too few inliers, ECC not converging,
an implausible jump) the warp is the camera's recent translation (a moving
average of the accepted estimates; ``fallback='recent'``) or the identity
(``fallback='identity'``). Compensated tracks carry their motion in the
world, not in the image: an identity on a failed frame would drop the
camera's pan for that frame, which the tracks' velocities no longer hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from mtmnv3.tracking.kalman import check_affine
from mtmnv3.tracking.track import check_int, check_number

__all__ = ["CMC_METHODS", "CameraMotion", "build_cmc", "is_identity"]

#: Estimation methods of :class:`CameraMotion`.
CMC_METHODS = ("sparse_flow", "ecc")
#: What :class:`CameraMotion` returns for a frame whose estimate fails.
FALLBACKS = ("recent", "identity")


def _identity() -> np.ndarray:
    return np.eye(2, 3, dtype=np.float64)


class CameraMotion:
    """Frame-to-frame global motion of the image, as a 2x3 affine warp.

    Call :meth:`estimate` once per frame, in order; it returns the warp
    that maps points of the previous frame given to the current one (the
    identity for the first frame after :meth:`reset`).

    Args:
        method: ``'sparse_flow'`` or ``'ecc'`` (see the module notes).
        downscale: The frame is shrunk by this factor (>= 1) before
            estimation; the warp is returned in full-frame pixels.
        max_features: Most corners tracked (``sparse_flow``).
        quality_level: ``goodFeaturesToTrack``'s corner quality, relative to
            the strongest corner outside the boxes: low, as the strongest is
            often on an object the detector missed, and a smooth background's
            corners are far weaker than an object's.
        min_distance: Smallest distance between corners, in downscaled pixels.
        ransac_thr: RANSAC inlier distance, in downscaled pixels.
        min_inliers: Fewest RANSAC inliers of an accepted warp.
        min_inlier_ratio: Smallest share of the followed corners that are
            RANSAC inliers in an accepted warp.
        min_eig: Lucas-Kanade's ``minEigThreshold``: corners whose window is
            flatter than this are not followed (OpenCV's default, 1e-4,
            drops nearly every corner of a smooth background).
        max_shift: Largest accepted motion per frame, as a fraction of the
            frame's shorter side; a larger estimate (a stripe texture's
            aperture problem, a scene cut) is rejected.
        max_rotation / max_zoom: Largest accepted rotation (radians) and
            change of scale per frame.
        mask_boxes: Take no corners inside the detection boxes (objects move
            on their own); ``sparse_flow`` only.
        box_margin: Pixels (full frame) added around each masked box.
        ecc_iterations / ecc_eps: ECC's termination criteria.
        fallback: The warp of a frame whose estimate fails: ``'recent'``
            (the moving average of the accepted translations; the identity
            before any) or ``'identity'``.
        recent_weight: Weight of the newest accepted translation in that average.

    Raises:
        ValueError: If an argument is out of range or ``method`` is unknown.
    """

    def __init__(
        self,
        method: str = "sparse_flow",
        downscale: float = 2.0,
        max_features: int = 100,
        quality_level: float = 1e-4,
        min_distance: float = 4.0,
        ransac_thr: float = 1.0,
        min_inliers: int = 10,
        min_inlier_ratio: float = 0.5,
        min_eig: float = 1e-5,
        max_shift: float = 0.15,
        max_rotation: float = 0.1,
        max_zoom: float = 0.1,
        mask_boxes: bool = True,
        box_margin: float = 2.0,
        ecc_iterations: int = 50,
        ecc_eps: float = 1e-4,
        fallback: str = "recent",
        recent_weight: float = 0.5,
    ) -> None:
        if method not in CMC_METHODS:
            raise ValueError(f"cmc method must be one of {CMC_METHODS}, got {method!r}")
        self.method = method
        self.downscale = check_number("downscale", downscale, 1.0, 64.0)
        self.max_features = check_int("max_features", max_features, 4)
        self.quality_level = check_number("quality_level", quality_level, 0.0, 1.0, low_open=True)
        self.min_distance = check_number("min_distance", min_distance, 0.0, 1e4)
        self.ransac_thr = check_number("ransac_thr", ransac_thr, 0.0, 1e4, low_open=True)
        self.min_inliers = check_int("min_inliers", min_inliers, 3)
        self.min_inlier_ratio = check_number("min_inlier_ratio", min_inlier_ratio, 0.0, 1.0)
        self.min_eig = check_number("min_eig", min_eig, 0.0, 1.0)
        self.max_shift = check_number("max_shift", max_shift, 0.0, 10.0, low_open=True)
        self.max_rotation = check_number("max_rotation", max_rotation, 0.0, np.pi, low_open=True)
        self.max_zoom = check_number("max_zoom", max_zoom, 0.0, 1.0, low_open=True)
        self.mask_boxes = bool(mask_boxes)
        self.box_margin = check_number("box_margin", box_margin, 0.0, 1e4)
        self.ecc_iterations = check_int("ecc_iterations", ecc_iterations, 1)
        self.ecc_eps = check_number("ecc_eps", ecc_eps, 0.0, 1.0, low_open=True)
        if fallback not in FALLBACKS:
            raise ValueError(f"cmc fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.fallback = fallback
        self.recent_weight = check_number("recent_weight", recent_weight, 0.0, 1.0, low_open=True)
        self._lk_params = dict(
            winSize=(9, 9),
            maxLevel=2,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
            minEigThreshold=self.min_eig,
        )
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new video)."""
        self._prev: np.ndarray | None = None
        self._prev_points: np.ndarray | None = None
        self._prev_shape: tuple[int, int] | None = None
        self._recent: np.ndarray | None = None
        #: Whether the latest :meth:`estimate` produced a warp (``False``: the fallback, or the first frame).
        self.last_ok = False

    def config(self) -> dict[str, Any]:
        """The constructor arguments (``CameraMotion(**cmc.config())`` builds an equal estimator)."""
        return dict(
            method=self.method,
            downscale=self.downscale,
            max_features=self.max_features,
            quality_level=self.quality_level,
            min_distance=self.min_distance,
            ransac_thr=self.ransac_thr,
            min_inliers=self.min_inliers,
            min_inlier_ratio=self.min_inlier_ratio,
            min_eig=self.min_eig,
            max_shift=self.max_shift,
            max_rotation=self.max_rotation,
            max_zoom=self.max_zoom,
            mask_boxes=self.mask_boxes,
            box_margin=self.box_margin,
            ecc_iterations=self.ecc_iterations,
            ecc_eps=self.ecc_eps,
            fallback=self.fallback,
            recent_weight=self.recent_weight,
        )

    # ------------------------------------------------------------------ estimation

    def estimate(self, frame: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """The warp from the previous frame to ``frame``.

        Args:
            frame: (H, W, 3) RGB (or BGR) or (H, W) grey uint8 pixels; the
                size must stay the same until :meth:`reset`.
            boxes: (N, 4) ``x1, y1, x2, y2`` of this frame's detections, in
                ``frame`` pixels (their corners are not used); ``None`` for none.

        Returns:
            (2, 3) float64 ``[A | t]``: a point ``p`` of the previous frame is
            at ``A p + t`` in this one.

        Raises:
            ValueError: If ``frame`` is not an image or its size changed.
        """
        grey, scale = self._prepare(frame)
        points = None
        if self.method == "sparse_flow":
            points = self._corners(grey, boxes, scale)
        warp, ok = _identity(), False
        if self._prev is not None:
            if self.method == "sparse_flow":
                small = self._flow_warp(self._prev, self._prev_points, grey)
            else:
                small = self._ecc_warp(self._prev, grey)
            if small is not None and self._plausible(small, grey.shape):
                warp, ok = _to_full(small, scale), True
                w = self.recent_weight
                self._recent = (
                    warp[:, 2].copy() if self._recent is None else (1 - w) * self._recent + w * warp[:, 2]
                )
            elif self.fallback == "recent" and self._recent is not None:
                warp[:, 2] = self._recent
        self._prev, self._prev_points, self.last_ok = grey, points, ok
        return warp

    def _plausible(self, warp: np.ndarray, shape: tuple[int, int]) -> bool:
        """Whether a (downscaled) warp is a believable camera motion between two frames."""
        if not np.all(np.isfinite(warp)):
            return False
        linear = warp[:, :2]
        zoom = float(np.sqrt(abs(np.linalg.det(linear))))
        rotation = abs(float(np.arctan2(linear[1, 0], linear[0, 0])))
        # The shift of the image centre (a rotation about the corner moves it too).
        centre = np.array([shape[1], shape[0]], np.float64) / 2
        shift = float(np.linalg.norm(linear @ centre + warp[:, 2] - centre))
        return (
            abs(zoom - 1.0) <= self.max_zoom
            and rotation <= self.max_rotation
            and shift <= self.max_shift * min(shape)
        )

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Grey, downscaled copy of ``frame`` and the (x, y) factors from full to downscaled pixels."""
        image = np.asarray(frame)
        if image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
        ):
            raise ValueError(
                f"frame must be (H, W, 3) or (H, W) uint8 pixels, got {image.dtype} {image.shape}"
            )
        h, w = image.shape[:2]
        if min(h, w) < 8:
            raise ValueError(f"frame must be at least 8 x 8 pixels, got {h} x {w}")
        if self._prev_shape is not None and self._prev_shape != (h, w):
            raise ValueError(
                f"frame size changed from {self._prev_shape} to {(h, w)} (call reset() for a new video)"
            )
        self._prev_shape = (h, w)
        if image.ndim == 3:
            code = {1: None, 3: cv2.COLOR_RGB2GRAY, 4: cv2.COLOR_RGBA2GRAY}[image.shape[2]]
            image = image[..., 0] if code is None else cv2.cvtColor(image, code)
        if self.downscale > 1.0:
            size = (max(8, round(w / self.downscale)), max(8, round(h / self.downscale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image), (image.shape[1] / w, image.shape[0] / h)

    def _corners(
        self, grey: np.ndarray, boxes: np.ndarray | None, scale: tuple[float, float]
    ) -> np.ndarray | None:
        mask = None
        if self.mask_boxes and boxes is not None and len(boxes):
            b = np.asarray(boxes, np.float64).reshape(-1, 4)
            b = b + np.array([-1.0, -1.0, 1.0, 1.0]) * self.box_margin
            b = b * np.array([scale[0], scale[1], scale[0], scale[1]])
            h, w = grey.shape
            x1 = np.clip(np.floor(b[:, 0]), 0, w).astype(int)
            y1 = np.clip(np.floor(b[:, 1]), 0, h).astype(int)
            x2 = np.clip(np.ceil(b[:, 2]), 0, w).astype(int)
            y2 = np.clip(np.ceil(b[:, 3]), 0, h).astype(int)
            mask = np.full(grey.shape, 255, np.uint8)
            for i in range(len(b)):
                mask[y1[i] : y2[i], x1[i] : x2[i]] = 0
        points = cv2.goodFeaturesToTrack(
            grey,
            maxCorners=self.max_features,
            qualityLevel=self.quality_level,
            minDistance=self.min_distance,
            mask=mask,
            blockSize=3,
        )
        return None if points is None or len(points) < self.min_inliers else points

    def _flow_warp(self, prev: np.ndarray, points: np.ndarray | None, grey: np.ndarray) -> np.ndarray | None:
        if points is None:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, points, None, **self._lk_params)
        if moved is None or status is None:
            return None
        good = status.reshape(-1) == 1
        src, dst = points.reshape(-1, 2)[good], moved.reshape(-1, 2)[good]
        if len(src) < self.min_inliers:
            return None
        warp, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=self.ransac_thr, maxIters=200, confidence=0.99
        )
        if warp is None or inliers is None:
            return None
        kept = int(inliers.sum())
        if kept < self.min_inliers or kept < self.min_inlier_ratio * len(src):
            return None
        return warp.astype(np.float64)

    def _ecc_warp(self, prev: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.ecc_iterations, self.ecc_eps)
        try:
            _, warp = cv2.findTransformECC(prev, grey, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:  # no convergence, or a flat image
            return None
        return warp.astype(np.float64)


def _to_full(warp: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """A warp estimated in downscaled pixels (``q = S p``, ``S = diag(scale)``) in full pixels: ``S^-1 W S``."""
    s = np.array(scale, np.float64)
    full = np.empty((2, 3))
    full[:, :2] = warp[:, :2] * s[None, :] / s[:, None]
    full[:, 2] = warp[:, 2] / s
    return full


def build_cmc(cfg: Mapping[str, Any] | CameraMotion | None) -> CameraMotion | None:
    """A :class:`CameraMotion` from ``dict(method=..., downscale=..., ...)`` (``None``: CMC off).

    Raises:
        TypeError: If ``cfg`` is neither a mapping, an estimator nor ``None``,
            or has an unknown key.
        ValueError: If a value is out of range.
    """
    if cfg is None or isinstance(cfg, CameraMotion):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"cmc must be None, a CameraMotion or a dict like dict(method='sparse_flow', downscale=2), "
            f"got {type(cfg).__name__}"
        )
    try:
        return CameraMotion(**cfg)
    except TypeError as err:
        raise TypeError(f"bad cmc arguments: {err}") from err


def is_identity(warp: np.ndarray) -> bool:
    """Whether ``warp`` is exactly the identity (nothing to apply)."""
    return bool(np.array_equal(check_affine(warp), _identity()))
