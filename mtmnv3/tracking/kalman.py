"""Constant-velocity Kalman filters in (cx, cy, aspect, h) or (cx, cy, w, h) box space, vectorised over tracks.

:class:`KalmanFilterXYAH`: the state of a track is ``(cx, cy, a, h, vcx, vcy,
va, vh)``: box centre, aspect ratio ``a = w / h``, height and their
velocities. Observations are ``(cx, cy, a, h)``. Process and measurement
noise scale with the box height, as in DeepSORT (Wojke et al., 2017) and
ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating
Every Detection Box", ECCV 2022), whose noise weights are the defaults here.

:class:`KalmanFilterXYWH`: the state is ``(cx, cy, w, h, ...)`` with width and
height filtered separately and noise on x and w scaled by the width, on y and
h by the height, as in BoT-SORT (Aharon et al., "BoT-SORT: Robust
Associations Multi-Pedestrian Tracking", 2022), which found it places boxes
better than the aspect-ratio state.

Both convert corner boxes to their measurements (:meth:`to_measurement`) and
states back to corner boxes (:meth:`to_xyxy`); :data:`KALMAN_FILTERS` names them.

Every method works on a stack of tracks: means of shape (N, 8) and
covariances of shape (N, 8, 8), so one call predicts or updates all tracks
(ByteTrack's ``multi_predict``, extended to ``update`` and gating).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHI2INV95",
    "GATE_DOF",
    "KALMAN_FILTERS",
    "KalmanFilterXYAH",
    "KalmanFilterXYWH",
    "build_kalman",
    "check_affine",
    "xyah_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_xyah",
    "xyxy_to_xywh",
]

#: 0.95 quantile of the chi-square distribution with N degrees of freedom
#: (``scipy.stats.chi2.ppf(0.95, N)``), the Mahalanobis gate of DeepSORT/ByteTrack.
CHI2INV95: dict[int, float] = {
    1: 3.8415,
    2: 5.9915,
    3: 7.8147,
    4: 9.4877,
    5: 11.070,
    6: 12.592,
    7: 14.067,
    8: 15.507,
    9: 16.919,
}
#: Degrees of freedom of a full (cx, cy, a, h) measurement.
GATE_DOF = 4
#: Size of a measurement and of the state.
MEASUREMENT_DIM = 4
STATE_DIM = 2 * MEASUREMENT_DIM
#: Initial std of the box size/velocity terms, in multiples of the position/velocity weight (ByteTrack).
INIT_POSITION_SCALE = 2.0
INIT_VELOCITY_SCALE = 10.0
#: Std of the aspect ratio (dimensionless, so not scaled by height), as in ByteTrack.
ASPECT_STD_INIT = 1e-2
ASPECT_VELOCITY_STD_INIT = 1e-5
ASPECT_STD_PROCESS = 1e-2
ASPECT_VELOCITY_STD_PROCESS = 1e-5
ASPECT_STD_MEASUREMENT = 1e-1


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes to (centre x, centre y, aspect w/h, height).

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2`` with positive height.

    Returns:
        (N, 4) float64 ``cx, cy, w / h, h``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(centre x, centre y, aspect w/h, height) to corner boxes.

    Args:
        xyah: (N, >=4) array; only the first four columns are read, so a
            Kalman mean of shape (N, 8) works directly.

    Returns:
        (N, 4) float64 ``x1, y1, x2, y2``.
    """
    xyah = np.asarray(xyah, np.float64)
    xyah = xyah.reshape(-1, xyah.shape[-1]) if xyah.size else xyah.reshape(0, MEASUREMENT_DIM)
    h = xyah[:, 3]
    w = xyah[:, 2] * h
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes to (centre x, centre y, width, height): (N, 4) float64."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h], axis=1)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """(centre x, centre y, width, height) -- or (N, 8) states -- to corner boxes: (N, 4) float64."""
    xywh = np.asarray(xywh, np.float64)
    xywh = xywh.reshape(-1, xywh.shape[-1]) if xywh.size else xywh.reshape(0, MEASUREMENT_DIM)
    half_w, half_h = xywh[:, 2] / 2, xywh[:, 3] / 2
    return np.stack(
        [xywh[:, 0] - half_w, xywh[:, 1] - half_h, xywh[:, 0] + half_w, xywh[:, 1] + half_h], axis=1
    )


def check_affine(affine: np.ndarray) -> np.ndarray:
    """``affine`` as a finite (2, 3) float64 matrix ``[A | t]`` mapping ``p`` to ``A p + t``.

    Raises:
        ValueError: If it has another shape, non-finite entries or a singular ``A``.
    """
    affine = np.asarray(affine, np.float64)
    if affine.shape != (2, 3):
        raise ValueError(f"affine must have shape (2, 3) ([A | t], p -> A p + t), got {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise ValueError("affine must be finite, got NaN or inf")
    if abs(np.linalg.det(affine[:, :2])) < 1e-9:
        raise ValueError(f"affine must have an invertible linear part, got {affine.tolist()}")
    return affine


def _check_stack(mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, np.float64)
    covariance = np.asarray(covariance, np.float64)
    if mean.ndim != 2 or mean.shape[1] != STATE_DIM:
        raise ValueError(f"mean must have shape (N, {STATE_DIM}), got {mean.shape}")
    if covariance.shape != (len(mean), STATE_DIM, STATE_DIM):
        raise ValueError(
            f"covariance must have shape (N, {STATE_DIM}, {STATE_DIM}) with N = {len(mean)}, "
            f"got {covariance.shape}"
        )
    return mean, covariance


def _check_measurements(measurements: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    measurements = np.asarray(measurements, np.float64)
    if measurements.size == 0 and n in (None, 0):
        return measurements.reshape(0, MEASUREMENT_DIM)
    if (
        measurements.ndim != 2
        or measurements.shape[1] != MEASUREMENT_DIM
        or (n is not None and len(measurements) != n)
    ):
        expected = "(M, 4)" if n is None else f"(N, 4) with N = {n}"
        raise ValueError(f"{name} must have shape {expected} (cx, cy, a, h), got {measurements.shape}")
    return measurements


class KalmanFilterXYAH:
    """Constant-velocity Kalman filter on (cx, cy, a, h) boxes, for many tracks at once.

    The motion model is ``x_{t+1} = F x_t + w`` with ``F`` adding ``dt``
    times the velocity to each coordinate; the observation model reads the
    first four state entries. Noise standard deviations are proportional to
    the box height ``h`` (``std_weight_position * h`` for positions,
    ``std_weight_velocity * h`` for velocities) except for the aspect ratio,
    whose noise is fixed (ByteTrack's ``kalman_filter.py``).

    Args:
        std_weight_position: Position noise per unit of box height (ByteTrack: 1/20).
        std_weight_velocity: Velocity noise per unit of box height (ByteTrack: 1/160).
        dt: Time step of one :meth:`predict`, in frames.

    Raises:
        ValueError: If a weight or ``dt`` is not positive.
    """

    def __init__(
        self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160, dt: float = 1.0
    ) -> None:
        for name, value in (
            ("std_weight_position", std_weight_position),
            ("std_weight_velocity", std_weight_velocity),
            ("dt", dt),
        ):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.std_weight_position = float(std_weight_position)
        self.std_weight_velocity = float(std_weight_velocity)
        self.dt = float(dt)
        self.motion_mat = np.eye(STATE_DIM)
        self.motion_mat[:MEASUREMENT_DIM, MEASUREMENT_DIM:] = self.dt * np.eye(MEASUREMENT_DIM)
        self.update_mat = np.eye(MEASUREMENT_DIM, STATE_DIM)

    #: The box space of the state and measurements, and the state entries a camera zoom scales.
    box_space = "xyah"
    _size_dims: tuple[int, ...] = (3, 7)

    def to_measurement(self, boxes: np.ndarray) -> np.ndarray:
        """Corner boxes ``x1, y1, x2, y2`` to this filter's measurements (N, 4)."""
        return xyxy_to_xyah(boxes)

    def to_xyxy(self, states: np.ndarray) -> np.ndarray:
        """Measurements or states (their first four entries) to corner boxes (N, 4)."""
        return xyah_to_xyxy(states)

    def _state_std(self, z: np.ndarray, pos_scale: float, vel_scale: float, initial: bool) -> np.ndarray:
        """(N, 8) standard deviations of the state for boxes ``z`` (N, 4), at start (``initial``) or per step."""
        h = z[:, 3]
        pos = pos_scale * self.std_weight_position * h
        vel = vel_scale * self.std_weight_velocity * h
        aspect, aspect_vel = (
            (ASPECT_STD_INIT, ASPECT_VELOCITY_STD_INIT)
            if initial
            else (ASPECT_STD_PROCESS, ASPECT_VELOCITY_STD_PROCESS)
        )
        return np.stack(
            [pos, pos, np.full_like(h, aspect), pos, vel, vel, np.full_like(h, aspect_vel), vel], axis=1
        )

    def _measurement_std(self, z: np.ndarray) -> np.ndarray:
        """(N, 4) standard deviations of a measurement of boxes ``z`` (N, 4)."""
        h = z[:, 3]
        pos = self.std_weight_position * h
        return np.stack([pos, pos, np.full_like(h, ASPECT_STD_MEASUREMENT), pos], axis=1)

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start tracks from unassociated measurements (velocity 0).

        Args:
            measurements: (N, 4) boxes ``cx, cy, a, h``.

        Returns:
            ``mean`` (N, 8) and ``covariance`` (N, 8, 8), diagonal with
            standard deviations ``2 wp h`` (cx, cy, h), 1e-2 (a), ``10 wv h``
            (velocities of cx, cy, h) and 1e-5 (velocity of a).
        """
        measurements = _check_measurements(measurements, "measurements")
        mean = np.concatenate([measurements, np.zeros_like(measurements)], axis=1)
        std = self._state_std(measurements, INIT_POSITION_SCALE, INIT_VELOCITY_SCALE, initial=True)
        covariance = np.zeros((len(mean), STATE_DIM, STATE_DIM))
        idx = np.arange(STATE_DIM)
        covariance[:, idx, idx] = std**2
        return mean, covariance

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One prediction step for every track: ``x' = F x``, ``P' = F P F^T + Q``.

        Args:
            mean: (N, 8) states.
            covariance: (N, 8, 8) state covariances.

        Returns:
            Predicted ``mean`` (N, 8) and ``covariance`` (N, 8, 8) (new arrays).
        """
        mean, covariance = _check_stack(mean, covariance)
        std = self._state_std(mean[:, :MEASUREMENT_DIM], 1.0, 1.0, initial=False)
        new_mean = mean @ self.motion_mat.T
        new_cov = self.motion_mat @ covariance @ self.motion_mat.T
        idx = np.arange(STATE_DIM)
        new_cov[:, idx, idx] += std**2
        return new_mean, new_cov

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map states to measurement space: ``H x`` and ``S = H P H^T + R``.

        Args:
            mean: (N, 8) states.
            covariance: (N, 8, 8) state covariances.

        Returns:
            Projected ``mean`` (N, 4) and innovation ``covariance`` (N, 4, 4);
            ``R`` is diagonal with standard deviations ``wp h`` (cx, cy, h) and 0.1 (a).
        """
        mean, covariance = _check_stack(mean, covariance)
        std = self._measurement_std(mean[:, :MEASUREMENT_DIM])
        projected_cov = covariance[:, :MEASUREMENT_DIM, :MEASUREMENT_DIM].copy()
        idx = np.arange(MEASUREMENT_DIM)
        projected_cov[:, idx, idx] += std**2
        return mean[:, :MEASUREMENT_DIM].copy(), projected_cov

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct each track with its own measurement (row i with row i).

        ``K = P H^T S^{-1}``, ``x' = x + K (z - H x)``, ``P' = P - K S K^T``.

        Args:
            mean: (N, 8) predicted states.
            covariance: (N, 8, 8) predicted covariances.
            measurements: (N, 4) ``cx, cy, a, h`` associated with the tracks.

        Returns:
            Corrected ``mean`` (N, 8) and ``covariance`` (N, 8, 8).

        Raises:
            ValueError: If the shapes do not correspond.
        """
        mean, covariance = _check_stack(mean, covariance)
        measurements = _check_measurements(measurements, "measurements", len(mean))
        projected_mean, projected_cov = self.project(mean, covariance)
        # S K^T = H P  (S symmetric), solved for all tracks at once.
        gain = np.linalg.solve(projected_cov, covariance[:, :MEASUREMENT_DIM, :]).transpose(0, 2, 1)
        innovation = measurements - projected_mean
        new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_cov = covariance - gain @ projected_cov @ gain.transpose(0, 2, 1)
        new_cov = 0.5 * (new_cov + new_cov.transpose(0, 2, 1))  # keep it symmetric against round-off
        return new_mean, new_cov

    def warp(
        self, mean: np.ndarray, covariance: np.ndarray, affine: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move every track by a global image motion (camera-motion compensation).

        ``affine`` maps points of the previous frame to the current frame,
        ``p -> A p + t`` (BoT-SORT's GMC warp). The box centre moves as a
        point, its velocity by ``A`` alone; the height and its velocity scale
        by ``s = sqrt(|det A|)`` (the zoom of a similarity; aspect ratios do
        not change). With ``T`` the resulting linear map of the state:
        ``x' = T x + (t, 0, ...)`` and ``P' = T P T^T``.

        Args:
            mean: (N, 8) states.
            covariance: (N, 8, 8) state covariances.
            affine: (2, 3) ``[A | t]``.

        Returns:
            Warped ``mean`` (N, 8) and ``covariance`` (N, 8, 8) (new arrays).

        Raises:
            ValueError: If a shape is wrong or ``affine`` is not finite and invertible.
        """
        mean, covariance = _check_stack(mean, covariance)
        affine = check_affine(affine)
        linear, shift = affine[:, :2], affine[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(linear))))
        transform = np.eye(STATE_DIM)
        transform[0:2, 0:2] = linear
        transform[4:6, 4:6] = linear
        for d in self._size_dims:
            transform[d, d] = scale
        new_mean = mean @ transform.T
        new_mean[:, :2] += shift
        new_cov = transform @ covariance @ transform.T
        return new_mean, new_cov

    def gating_distance(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray, only_position: bool = False
    ) -> np.ndarray:
        """Squared Mahalanobis distance between every track and every measurement.

        Compare with ``CHI2INV95[4]`` (``CHI2INV95[2]`` when
        ``only_position``) to gate out implausible associations.

        Args:
            mean: (N, 8) states.
            covariance: (N, 8, 8) state covariances.
            measurements: (M, 4) ``cx, cy, a, h``.
            only_position: Use only the box centre (2 degrees of freedom).

        Returns:
            (N, M) float64 squared distances.
        """
        mean, covariance = _check_stack(mean, covariance)
        measurements = _check_measurements(measurements, "measurements")
        if len(mean) == 0 or len(measurements) == 0:
            return np.zeros((len(mean), len(measurements)))
        projected_mean, projected_cov = self.project(mean, covariance)
        dims = 2 if only_position else MEASUREMENT_DIM
        projected_mean, projected_cov = projected_mean[:, :dims], projected_cov[:, :dims, :dims]
        diff = measurements[None, :, :dims] - projected_mean[:, None, :]  # (N, M, d)
        diff_t = diff.transpose(0, 2, 1)  # (N, d, M)
        solved = np.linalg.solve(projected_cov, diff_t)
        return np.einsum("ndm,ndm->nm", diff_t, solved)


class KalmanFilterXYWH(KalmanFilterXYAH):
    """Constant-velocity Kalman filter on (cx, cy, w, h) boxes (BoT-SORT's state), for many tracks at once.

    The same motion and observation model as :class:`KalmanFilterXYAH`, with
    width and height filtered separately: the noise of x, w and their
    velocities is proportional to the box width, of y, h and theirs to the
    height (``std_weight_position``, ``std_weight_velocity``; at start twice
    and ten times that, as for the aspect-ratio filter). A camera zoom scales
    both width and height.
    """

    box_space = "xywh"
    _size_dims = (2, 3, 6, 7)

    def to_measurement(self, boxes: np.ndarray) -> np.ndarray:
        return xyxy_to_xywh(boxes)

    def to_xyxy(self, states: np.ndarray) -> np.ndarray:
        return xywh_to_xyxy(states)

    def _state_std(self, z: np.ndarray, pos_scale: float, vel_scale: float, initial: bool) -> np.ndarray:
        wh = np.stack([z[:, 2], z[:, 3], z[:, 2], z[:, 3]], axis=1)
        return np.concatenate(
            [pos_scale * self.std_weight_position * wh, vel_scale * self.std_weight_velocity * wh], axis=1
        )

    def _measurement_std(self, z: np.ndarray) -> np.ndarray:
        return self.std_weight_position * np.stack([z[:, 2], z[:, 3], z[:, 2], z[:, 3]], axis=1)


#: ``kalman=`` names of the tracker's motion filters.
KALMAN_FILTERS: dict[str, type[KalmanFilterXYAH]] = {"xyah": KalmanFilterXYAH, "xywh": KalmanFilterXYWH}


def build_kalman(name: str) -> KalmanFilterXYAH:
    """The Kalman filter ``name`` names (``'xyah'`` or ``'xywh'``); an unknown name lists the known ones."""
    if name not in KALMAN_FILTERS:
        raise ValueError(f"kalman must be one of {sorted(KALMAN_FILTERS)}, got {name!r}")
    return KALMAN_FILTERS[name]()
