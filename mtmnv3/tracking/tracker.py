"""Two-stage tracking by detection with appearance embeddings (ByteTrack + FairMOT re-ID).

:class:`EmbeddingTracker` follows ByteTrack (Zhang et al., "ByteTrack:
Multi-Object Tracking by Associating Every Detection Box", ECCV 2022): every
frame, Kalman-predicted tracks are associated first with the high-score
detections, then the tracks still unmatched with the low-score detections
(occluded objects often score low), then tentative tracks with the high-score
leftovers; new tracks start from the remaining confident detections. The
first association adds FairMOT's appearance cue (Zhang et al., "FairMOT: On
the Fairness of Detection and Re-Identification in Multiple Object
Tracking", IJCV 2021): the cosine distance between a track's smoothed
embedding and each detection's embedding, fused with the IoU distance and
gated by the Kalman filter's Mahalanobis distance. With ``emb_weight=0`` or
``use_embeddings=False`` the tracker is plain (IoU-only) ByteTrack. With
``cmc=dict(...)`` every track is moved by the camera's motion, estimated on
the frame's pixels, before association (:mod:`mtmnv3.tracking.cmc`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtmnv3.tracking.cmc import CameraMotion, build_cmc, is_identity
from mtmnv3.tracking.kalman import (
    CHI2INV95,
    GATE_DOF,
    KALMAN_FILTERS,
    STATE_DIM,
    build_kalman,
)
from mtmnv3.tracking.matching import (
    EMBEDDING_EPS,
    embedding_distance,
    fuse_embedding_iou,
    fuse_min_gated,
    gate_cost,
    iou_distance,
    iou_matrix,
    linear_assignment,
)
from mtmnv3.tracking.track import (
    Detections,
    Track,
    TrackResult,
    TrackState,
    check_int,
    check_number,
    smooth_embedding,
    to_numpy,
)

__all__ = ["EmbeddingTracker", "Track", "TrackResult", "TrackState"]

#: Frame rate that ``track_buffer`` is expressed in (ByteTrack scales it by ``frame_rate / 30``).
REFERENCE_FRAME_RATE = 30.0
#: First-association fusions of embedding and IoU costs.
FUSIONS = ("min", "weighted")


class EmbeddingTracker:
    """ByteTrack two-stage association with FairMOT appearance embeddings.

    Each :meth:`update` runs, on Kalman-predicted tracks:

    1. *First association*: confirmed tracks (tracked and lost) against the
       detections with ``score >= high_thr``; cost ``emb_weight * (1 - cos) +
       (1 - emb_weight) * (1 - IoU)``, pairs outside the Kalman gate
       (squared Mahalanobis distance > ``gate_thr``) forbidden, pairs above
       ``match_thr`` rejected. Without embeddings the cost is ``1 - IoU``
       and no gate applies (ByteTrack).
    2. *Second association*: tracks tracked in the previous frame and still
       unmatched against the low-score detections (``low_thr <= score <
       high_thr``) by ``1 - IoU <= second_match_thr``; the tracks left over
       become lost.
    3. *Tentative tracks* against the high-score detections left over by
       ``1 - IoU <= unconfirmed_match_thr``; a tentative track with
       ``min_hits`` detections is confirmed, one that misses is removed.
    4. *Births*: high-score detections still unmatched with ``score >=
       new_track_thr`` start tentative tracks (confirmed at once in the
       first frame after :meth:`reset`, as in ByteTrack, or when ``min_hits == 1``).
    5. *Clean-up*: tracks unmatched for more than ``max_time_lost`` frames
       are removed; a lost track that duplicates a tracked one
       (``1 - IoU < duplicate_thr``) is removed, keeping the longer-lived one.

    Matched tracks take the detection's score and label; their embedding is
    updated only from high-score detections (low-score boxes are mostly
    occluded, so their appearance is unreliable).

    Args:
        high_thr: Detections at or above this score take part in the first
            association (ByteTrack ``track_thresh``, 0.5).
        low_thr: Detections below this score are discarded; those in
            ``[low_thr, high_thr)`` are used in the second association (ByteTrack: 0.1).
        new_track_thr: Smallest score that starts a track (ByteTrack:
            ``track_thresh + 0.1``); must be >= ``high_thr``.
        match_thr: Largest first-association cost of a match (ByteTrack ``match_thresh``, 0.8).
        second_match_thr: Largest ``1 - IoU`` of a second-association match (ByteTrack: 0.5).
        unconfirmed_match_thr: Largest ``1 - IoU`` of a tentative-track match (ByteTrack: 0.7).
        emb_weight: Weight of the embedding distance against the IoU
            distance in the first association (``fusion='weighted'``), in
            [0, 1]; 0 gives IoU-only association.
        fusion: ``'weighted'`` (default; FairMOT-style convex combination
            with ``emb_weight``) or ``'min'`` (BoT-SORT: ``min(1 - IoU, (1 -
            cos) / 2)`` with the embedding term only for near, alike pairs,
            see :func:`fuse_min_gated`).
        proximity_thr / appearance_thr: the ``'min'`` fusion's gates.
        use_embeddings: ``False`` ignores embeddings altogether (pure IoU
            ByteTrack, for comparison).
        emb_momentum: Weight of the old embedding in the moving average of a
            track's embedding (FairMOT: 0.9), in [0, 1).
        gate_thr: Largest squared Mahalanobis distance (4 degrees of freedom)
            of a first-association pair when embeddings are used; ``None``
            disables the gate. Default: the 0.95 chi-square quantile, 9.4877.
        gate_position_only: Gate on the box centre alone (2 degrees of
            freedom; the 0.95 quantile is 5.9915). The full gate also tests
            aspect ratio and height, whose detector jitter rejects true
            matches: on generated sequences with fast objects it nearly
            tripled the ID switches.
        track_buffer: Frames a lost track is kept, at 30 fps (ByteTrack: 30).
        frame_rate: Frame rate of the video; ``max_time_lost =
            int(frame_rate / 30 * track_buffer)``.
        min_hits: Matched detections (birth included) that confirm a track;
            1 confirms at birth, ByteTrack's behaviour is 2.
        class_aware: Forbid matches between a track and a detection of
            another class.
        duplicate_thr: A tracked and a lost track closer than this ``1 - IoU``
            are duplicates (ByteTrack: 0.15); 0 disables the check.
        cmc: Camera-motion compensation: ``None`` (default) for none, or the
            :class:`~mtmnv3.tracking.cmc.CameraMotion` arguments, e.g.
            ``dict(method='sparse_flow', downscale=2)``. Every frame passed
            to :meth:`update` (or :meth:`predict_only`) as ``frame=`` then
            moves all tracks by the global image motion since the previous
            frame given, after the Kalman prediction and before association.
            Frames given without pixels are tracked without it (the next
            frame with pixels makes up for the motion in between).
        cmc_check: Apply a frame's warp only when it brings the tracked
            tracks' predicted boxes at least as close to the frame's
            detections (summed best IoU) as no warp does. A periodic or
            one-directional background texture can give a consistent but
            wrong estimate (a shift by one period, or along the stripes),
            which the detections then overrule.
        kalman: The Kalman filter's box state: ``'xyah'`` (centre, aspect
            ratio, height: DeepSORT and ByteTrack) or ``'xywh'`` (centre,
            width, height, noise scaled per axis: BoT-SORT).

    Raises:
        ValueError: If a threshold is out of range or inconsistent.
    """

    def __init__(
        self,
        high_thr: float = 0.5,
        low_thr: float = 0.1,
        new_track_thr: float = 0.6,
        match_thr: float = 0.8,
        second_match_thr: float = 0.5,
        unconfirmed_match_thr: float = 0.7,
        emb_weight: float = 0.5,
        use_embeddings: bool = True,
        fusion: str = "weighted",
        proximity_thr: float = 0.5,
        appearance_thr: float = 0.25,
        emb_momentum: float = 0.9,
        gate_thr: float | None = CHI2INV95[GATE_DOF],
        gate_position_only: bool = False,
        track_buffer: int = 30,
        frame_rate: float = REFERENCE_FRAME_RATE,
        min_hits: int = 2,
        class_aware: bool = False,
        duplicate_thr: float = 0.15,
        cmc: Mapping[str, Any] | CameraMotion | None = None,
        cmc_check: bool = True,
        kalman: str = "xyah",
    ) -> None:
        self.high_thr = check_number("high_thr", high_thr, 0.0, 1.0)
        self.low_thr = check_number("low_thr", low_thr, 0.0, 1.0)
        self.new_track_thr = check_number("new_track_thr", new_track_thr, 0.0, 1.0)
        if self.low_thr > self.high_thr:
            raise ValueError(f"low_thr must be <= high_thr, got low_thr={low_thr!r} > high_thr={high_thr!r}")
        if self.new_track_thr < self.high_thr:
            raise ValueError(
                f"new_track_thr must be >= high_thr (tracks start from high-score detections), "
                f"got new_track_thr={new_track_thr!r} < high_thr={high_thr!r}"
            )
        self.match_thr = check_number("match_thr", match_thr, 0.0, 2.0)
        self.second_match_thr = check_number("second_match_thr", second_match_thr, 0.0, 1.0)
        self.unconfirmed_match_thr = check_number("unconfirmed_match_thr", unconfirmed_match_thr, 0.0, 1.0)
        self.emb_weight = check_number("emb_weight", emb_weight, 0.0, 1.0)
        self.use_embeddings = bool(use_embeddings)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.proximity_thr = check_number("proximity_thr", proximity_thr, 0.0, 1.0)
        self.appearance_thr = check_number("appearance_thr", appearance_thr, 0.0, 1.0)
        self.emb_momentum = check_number("emb_momentum", emb_momentum, 0.0, 1.0)
        if self.emb_momentum == 1.0:
            raise ValueError("emb_momentum must be < 1 (1 would never update the embedding), got 1.0")
        self.gate_thr = (
            None if gate_thr is None else check_number("gate_thr", gate_thr, 0.0, np.inf, low_open=True)
        )
        self.gate_position_only = bool(gate_position_only)
        self.track_buffer = check_int("track_buffer", track_buffer, 0)
        self.frame_rate = check_number("frame_rate", frame_rate, 0.0, np.inf, low_open=True)
        self.min_hits = check_int("min_hits", min_hits, 1)
        self.class_aware = bool(class_aware)
        self.duplicate_thr = check_number("duplicate_thr", duplicate_thr, 0.0, 1.0)
        #: Frames a track may go unmatched before it is removed (ByteTrack's ``max_time_lost``).
        self.max_time_lost = int(self.frame_rate / REFERENCE_FRAME_RATE * self.track_buffer)
        if kalman not in KALMAN_FILTERS:
            raise ValueError(
                f"kalman must be one of {sorted(KALMAN_FILTERS)} (the box state), got {kalman!r}"
            )
        self.kf = build_kalman(kalman)
        #: The camera-motion estimator, or ``None`` without CMC.
        self.cmc = build_cmc(cmc)
        self.cmc_check = bool(cmc_check)
        #: Warps estimated and applied, and estimated but overruled by the detections (``cmc_check``).
        self.cmc_counts = {"applied": 0, "overruled": 0}
        #: The warp applied to the tracks in the latest frame (identity without CMC).
        self.last_warp = np.eye(2, 3)
        self._tracks: list[Track] = []
        self._next_id = 1
        self._frame_id: int | None = None
        self._num_updates = 0
        self._emb_dim: int | None = None

    # ------------------------------------------------------------------ public API

    @property
    def fuses_embeddings(self) -> bool:
        """Whether the first association uses embeddings (when a frame provides them)."""
        return self.use_embeddings and (self.fusion == "min" or self.emb_weight > 0.0)

    @property
    def uses_frames(self) -> bool:
        """Whether :meth:`update` and :meth:`predict_only` read the frame's pixels (``frame=``, for CMC)."""
        return self.cmc is not None

    @property
    def frame_id(self) -> int | None:
        """The latest frame processed, ``None`` after :meth:`reset`."""
        return self._frame_id

    @property
    def tracks(self) -> tuple[Track, ...]:
        """All live tracks (tentative, tracked and lost), in birth order."""
        return tuple(self._tracks)

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1, for a new video."""
        self._tracks = []
        self._next_id = 1
        self._frame_id = None
        self._num_updates = 0
        self._emb_dim = None
        self.last_warp = np.eye(2, 3)
        self.cmc_counts = {"applied": 0, "overruled": 0}
        if self.cmc is not None:
            self.cmc.reset()

    def update(
        self,
        bboxes: Any,
        scores: Any,
        labels: Any = None,
        embeddings: Any = None,
        frame_id: int | None = None,
        frame: np.ndarray | None = None,
    ) -> TrackResult:
        """Advance to ``frame_id`` and associate this frame's detections.

        Pass ``embeddings=None`` on frames where the embedding head did not
        run: the first association then uses IoU only.

        Args:
            bboxes: (N, 4) detections ``x1, y1, x2, y2`` (NumPy array or
                tensor); boxes with zero width or height are ignored.
            scores: (N,) detection scores.
            labels: (N,) integer classes, or ``None`` for all 0.
            embeddings: (N, D) appearance embeddings (any scale; normalised
                here), or ``None``. D must stay the same until :meth:`reset`.
            frame_id: The frame, greater than the previous one; ``None`` for
                the previous frame + 1 (1 for the first). Skipped frames are
                predicted by the Kalman filter and count towards ``max_time_lost``.
            frame: The frame's pixels, (H, W, 3) RGB or (H, W) grey uint8, for
                camera-motion compensation (``cmc``); ignored without it.

        Returns:
            The confirmed, currently tracked tracks (see :class:`TrackResult`).

        Raises:
            ValueError: If an input has the wrong shape or non-finite values,
                a box has ``x2 < x1`` or ``y2 < y1``, or ``frame_id`` does not increase.
        """
        frame_no = self._check_frame(frame_id)
        dets = self._check_detections(bboxes, scores, labels, embeddings)
        if dets.embeddings is not None:
            self._emb_dim = dets.embeddings.shape[1]
        warp = self._camera_motion(frame, dets.bboxes)
        self._advance(frame_no)
        self._warp_tracks(warp, dets.bboxes[dets.scores >= self.low_thr])
        first_frame = self._num_updates == 0
        is_high = dets.scores >= self.high_thr
        high = dets.take(is_high)
        low = dets.take(~is_high & (dets.scores >= self.low_thr))
        pool = [t for t in self._tracks if t.state in (TrackState.TRACKED, TrackState.LOST)]
        tentative = [t for t in self._tracks if t.state == TrackState.TENTATIVE]

        # Step 1: confirmed (tracked + lost) tracks vs high-score detections, embeddings + IoU, gated.
        matches, pool_left, high_left = linear_assignment(self._first_cost(pool, high), self.match_thr)
        self._apply_matches(pool, high, matches, frame_no, update_embedding=True)

        # Step 2: tracks tracked until now and still unmatched vs low-score detections, IoU only.
        remaining = [pool[i] for i in pool_left if pool[i].state == TrackState.TRACKED]
        matches, remaining_left, _ = linear_assignment(self._iou_cost(remaining, low), self.second_match_thr)
        self._apply_matches(remaining, low, matches, frame_no, update_embedding=False)
        for i in remaining_left:
            remaining[i].state = TrackState.LOST

        # Step 3: tentative tracks vs the high-score detections left over, IoU only.
        high = high.take(high_left)
        matches, tentative_left, high_left = linear_assignment(
            self._iou_cost(tentative, high), self.unconfirmed_match_thr
        )
        self._apply_matches(tentative, high, matches, frame_no, update_embedding=True)
        for i in tentative_left:
            tentative[i].state = TrackState.REMOVED

        # Step 4: births from confident detections nobody claimed.
        high = high.take(high_left)
        self._start_tracks(high.take(high.scores >= self.new_track_thr), frame_no, confirmed=first_frame)

        # Step 5: clean-up.
        self._remove_duplicates()
        self._expire(frame_no)
        self._num_updates += 1
        return self._result()

    def predict_only(self, frame_id: int | None = None, frame: np.ndarray | None = None) -> TrackResult:
        """Advance the Kalman filter to ``frame_id`` without detections.

        For frames where the detector does not run (a run-time budget skips
        it): tracks keep their state, nothing is marked lost, and their
        predicted boxes are reported.

        Args:
            frame_id: The frame, greater than the previous one; ``None`` for
                the previous frame + 1.
            frame: The frame's pixels, for camera-motion compensation (``cmc``).

        Returns:
            The confirmed, tracked tracks with predicted boxes.

        Raises:
            ValueError: If ``frame_id`` does not increase.
        """
        frame_no = self._check_frame(frame_id)
        warp = self._camera_motion(frame, self.kf.to_xyxy(self._stack(self._tracks)[0]))
        self._advance(frame_no)
        self._warp_tracks(warp)
        self._expire(frame_no)
        return self._result()

    # ------------------------------------------------------------------ input checks

    def _check_detections(self, bboxes: Any, scores: Any, labels: Any, embeddings: Any) -> Detections:
        """Validate one frame's detections; drop zero-size boxes; normalise (or drop) embeddings."""
        boxes = to_numpy(bboxes, "bboxes", np.float64)
        if boxes.size == 0 and boxes.ndim <= 2 and (boxes.ndim < 2 or boxes.shape[1] in (0, 4)):
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"bboxes must have shape (N, 4) (x1, y1, x2, y2), got {boxes.shape}")
        n = len(boxes)
        score_arr = to_numpy(scores, "scores", np.float64)
        if score_arr.shape != (n,):
            raise ValueError(f"scores must have shape (N,) with N = {n} (one per box), got {score_arr.shape}")
        label_arr = self._check_labels(labels, n)
        emb = None if embeddings is None else self._check_embeddings(embeddings, n)
        for name, arr in (("bboxes", boxes), ("scores", score_arr), ("embeddings", emb)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite, got NaN or inf")
        bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"bboxes must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1, row {i} is {boxes[i].tolist()}"
            )
        if not self.fuses_embeddings:
            emb = None
        elif emb is not None:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), EMBEDDING_EPS)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():
            boxes, score_arr, label_arr = boxes[keep], score_arr[keep], label_arr[keep]
            emb = None if emb is None else emb[keep]
        return Detections(boxes, self.kf.to_measurement(boxes), score_arr, label_arr, emb)

    @staticmethod
    def _check_labels(labels: Any, n: int) -> np.ndarray:
        if labels is None:
            return np.zeros(n, np.int64)
        raw = to_numpy(labels, "labels", np.float64)
        if raw.shape != (n,):
            raise ValueError(f"labels must have shape (N,) with N = {n} (one per box), got {raw.shape}")
        not_int = ~np.isfinite(raw) | (raw != np.round(raw))
        if not_int.any():
            i = int(np.flatnonzero(not_int)[0])
            raise ValueError(f"labels must be integers, got {raw[i]!r} at index {i}")
        return raw.astype(np.int64)

    def _check_embeddings(self, embeddings: Any, n: int) -> np.ndarray:
        emb = to_numpy(embeddings, "embeddings", np.float64)
        if emb.ndim != 2 or len(emb) != n or emb.shape[1] == 0:
            raise ValueError(f"embeddings must have shape (N, D) with N = {n} (one per box), got {emb.shape}")
        if self.fuses_embeddings and self._emb_dim is not None and emb.shape[1] != self._emb_dim:
            raise ValueError(
                f"embeddings must have shape (N, D) with D = {self._emb_dim} as in earlier frames, got {emb.shape}"
            )
        return emb

    def _check_frame(self, frame_id: int | None) -> int:
        """The frame to process next: ``frame_id`` validated, or the previous frame + 1."""
        if frame_id is None:
            return 1 if self._frame_id is None else self._frame_id + 1
        if not isinstance(frame_id, numbers.Integral) or isinstance(frame_id, bool):
            raise ValueError(f"frame_id must be an integer or None, got {frame_id!r}")
        if self._frame_id is not None and frame_id <= self._frame_id:
            raise ValueError(
                f"frame_id must increase: got {frame_id} after frame {self._frame_id} "
                f"(call reset() for a new video)"
            )
        return int(frame_id)

    def _advance(self, frame: int) -> None:
        """Expire and Kalman-predict the tracks up to ``frame`` (already validated)."""
        steps = 0 if self._frame_id is None else frame - self._frame_id
        self._expire(frame - 1)  # tracks that ran out during skipped frames
        self._predict(steps)
        self._frame_id = frame

    # ------------------------------------------------------------------ camera motion

    def _camera_motion(self, image: np.ndarray | None, boxes: np.ndarray) -> np.ndarray:
        """The camera's motion since the previous frame with pixels (identity without CMC or pixels)."""
        if self.cmc is None or image is None:
            return np.eye(2, 3)
        return self.cmc.estimate(image, boxes)

    def _warp_tracks(self, warp: np.ndarray, boxes: np.ndarray | None = None) -> None:
        """Move every track's Kalman state by ``warp`` (after the prediction, before association),
        unless ``cmc_check`` and this frame's detections ``boxes`` say it moves the tracks away."""
        self.last_warp = np.eye(2, 3)
        if not self._tracks or is_identity(warp):
            return
        mean, covariance = self._stack(self._tracks)
        warped_mean, warped_cov = self.kf.warp(mean, covariance, warp)
        if self.cmc_check and boxes is not None and len(boxes):
            tracked = np.array([t.state == TrackState.TRACKED for t in self._tracks])
            if tracked.any():
                before = iou_matrix(self.kf.to_xyxy(mean[tracked]), boxes).max(axis=1).sum()
                after = iou_matrix(self.kf.to_xyxy(warped_mean[tracked]), boxes).max(axis=1).sum()
                if after < before:
                    self.cmc_counts["overruled"] += 1
                    return
        self.cmc_counts["applied"] += 1
        self.last_warp = warp
        for t, m, c in zip(self._tracks, warped_mean, warped_cov):
            t.mean, t.covariance = m, c

    # ------------------------------------------------------------------ association steps

    def _stack(self, tracks: Sequence[Track]) -> tuple[np.ndarray, np.ndarray]:
        if not tracks:
            return np.zeros((0, STATE_DIM)), np.zeros((0, STATE_DIM, STATE_DIM))
        return np.stack([t.mean for t in tracks]), np.stack([t.covariance for t in tracks])

    def _predict(self, steps: int) -> None:
        """Kalman-predict every track ``steps`` frames ahead (ByteTrack ``multi_predict``)."""
        if steps <= 0 or not self._tracks:
            return
        mean, covariance = self._stack(self._tracks)
        not_tracked = np.array([t.state != TrackState.TRACKED for t in self._tracks])
        for _ in range(steps):
            mean[not_tracked, 7] = 0.0  # ByteTrack: no height velocity for tracks without a recent match
            mean, covariance = self.kf.predict(mean, covariance)
        for t, m, c in zip(self._tracks, mean, covariance):
            t.mean, t.covariance = m, c

    def _class_gate(self, cost: np.ndarray, tracks: Sequence[Track], dets: Detections) -> np.ndarray:
        if self.class_aware and cost.size:
            track_labels = np.array([t.label for t in tracks])
            cost[track_labels[:, None] != dets.labels[None, :]] = np.inf
        return cost

    def _iou_cost(self, tracks: Sequence[Track], dets: Detections) -> np.ndarray:
        if not tracks or not len(dets):
            return np.zeros((len(tracks), len(dets)))
        mean, _ = self._stack(tracks)
        return self._class_gate(iou_distance(self.kf.to_xyxy(mean), dets.bboxes), tracks, dets)

    def _first_cost(self, tracks: Sequence[Track], dets: Detections) -> np.ndarray:
        """Fused embedding/IoU cost under the motion gate; IoU only without embeddings."""
        if not tracks or not len(dets):
            return np.zeros((len(tracks), len(dets)))
        mean, covariance = self._stack(tracks)
        cost = iou_distance(self.kf.to_xyxy(mean), dets.bboxes)
        if dets.embeddings is not None:
            has_emb = np.array([t.embedding is not None for t in tracks])
            if has_emb.any():
                track_emb = np.stack([t.embedding for t in tracks if t.embedding is not None])
                emb_cost = embedding_distance(track_emb, dets.embeddings)
                if self.fusion == "min":
                    cost[has_emb] = fuse_min_gated(
                        emb_cost, cost[has_emb], self.proximity_thr, self.appearance_thr
                    )
                else:
                    cost[has_emb] = fuse_embedding_iou(emb_cost, cost[has_emb], self.emb_weight)
            if self.gate_thr is not None:
                cost = gate_cost(
                    cost, self.kf, mean, covariance, dets.measurements, self.gate_thr, self.gate_position_only
                )
        return self._class_gate(cost, tracks, dets)

    def _apply_matches(
        self,
        tracks: Sequence[Track],
        dets: Detections,
        matches: np.ndarray,
        frame: int,
        update_embedding: bool,
    ) -> None:
        """Kalman-update the matched tracks (all at once) and take the detections' score and label."""
        if len(matches) == 0:
            return
        matched = [tracks[i] for i in matches[:, 0]]
        det_idx = matches[:, 1]
        mean, covariance = self._stack(matched)
        mean, covariance = self.kf.update(mean, covariance, dets.measurements[det_idx])
        for k, (t, d) in enumerate(zip(matched, det_idx)):
            t.mean, t.covariance = mean[k], covariance[k]
            t.score, t.label = float(dets.scores[d]), int(dets.labels[d])
            t.end_frame = frame
            t.hits += 1
            if update_embedding and dets.embeddings is not None:
                t.embedding = smooth_embedding(t.embedding, dets.embeddings[d], self.emb_momentum)
            if t.state != TrackState.TENTATIVE or t.hits >= self.min_hits:
                t.state = TrackState.TRACKED

    def _start_tracks(self, dets: Detections, frame: int, confirmed: bool) -> None:
        if not len(dets):
            return
        mean, covariance = self.kf.initiate(dets.measurements)
        state = TrackState.TRACKED if confirmed or self.min_hits <= 1 else TrackState.TENTATIVE
        for k in range(len(dets)):
            self._tracks.append(
                Track(
                    track_id=self._next_id,
                    mean=mean[k],
                    covariance=covariance[k],
                    score=float(dets.scores[k]),
                    label=int(dets.labels[k]),
                    embedding=None if dets.embeddings is None else dets.embeddings[k].copy(),
                    state=state,
                    start_frame=frame,
                    end_frame=frame,
                    box_space=self.kf.box_space,
                )
            )
            self._next_id += 1

    def _remove_duplicates(self) -> None:
        """ByteTrack ``remove_duplicate_stracks``: of a tracked/lost pair on the same box keep the older."""
        if self.duplicate_thr <= 0.0:
            return
        active = [t for t in self._tracks if t.state in (TrackState.TRACKED, TrackState.TENTATIVE)]
        lost = [t for t in self._tracks if t.state == TrackState.LOST]
        if not active or not lost:
            return
        dist = iou_distance(self.kf.to_xyxy(self._stack(active)[0]), self.kf.to_xyxy(self._stack(lost)[0]))
        for p, q in zip(*np.nonzero(dist < self.duplicate_thr)):
            a, b = active[p], lost[q]
            if a.end_frame - a.start_frame > b.end_frame - b.start_frame:
                b.state = TrackState.REMOVED
            else:
                a.state = TrackState.REMOVED
        self._tracks = [t for t in self._tracks if t.state != TrackState.REMOVED]

    def _expire(self, frame: int) -> None:
        """Remove removed tracks and those unmatched for more than ``max_time_lost`` frames at ``frame``."""
        self._tracks = [
            t
            for t in self._tracks
            if t.state != TrackState.REMOVED and frame - t.end_frame <= self.max_time_lost
        ]

    def _result(self) -> TrackResult:
        shown = sorted((t for t in self._tracks if t.state == TrackState.TRACKED), key=lambda t: t.track_id)
        mean, _ = self._stack(shown)
        return TrackResult(
            ids=np.array([t.track_id for t in shown], np.int64),
            bboxes=self.kf.to_xyxy(mean),
            scores=np.array([t.score for t in shown], np.float64),
            labels=np.array([t.label for t in shown], np.int64),
        )
