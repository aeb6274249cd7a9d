"""Peer trackers from BoxMOT (ByteTrack, OC-SORT, BoT-SORT) behind our tracker interface.

The adapters take what :class:`~mtmnv3.tracking.EmbeddingTracker` takes and
return what it returns, so any of them can be named in a tracker config
(``dict(type='BoxMOTOCSort', ...)``) and compared on the same detections:

=====================  =================  ==========================================
``type``               BoxMOT class       cues
=====================  =================  ==========================================
``BoxMOTByteTrack``    ``ByteTrack``      IoU, two score tiers (Zhang et al., 2022)
``BoxMOTOCSort``       ``OcSort``         IoU + motion direction, observation-centric
                                          re-update (Cao et al., 2023)
``BoxMOTBoTSORT``      ``BotSort``        IoU + our embeddings (min fusion), its own
                                          camera-motion compensation (Aharon et al., 2022)
=====================  =================  ==========================================

BoxMOT (``boxmot==25.0.0``, AGPL-3.0) is imported only when a peer is built;
without it, building one raises an :class:`ImportError` with the install
command. BoT-SORT gets the embeddings our model computes: it is built with a
re-ID stand-in that raises instead of loading weights, so no re-ID model is
ever downloaded. Its camera-motion compensation (``cmc_method``) needs the
frame's pixels: it runs on a sequence whose first frame comes with
``frame=``, and is off for one whose first frame comes without.

Options: the adapters accept the names our tracker configs use and pass
them on under BoxMOT's names (``high_thr`` -> ``track_thresh`` /
``det_thresh`` / ``track_high_thresh``, ``low_thr`` -> ``min_conf`` /
``track_low_thresh``, ...; see each class), so a config's thresholds tuned
to a detector's scores carry over; options that only configure our own
association (``fusion``, ``gate_thr``, ...) are ignored with a warning.
Any other keyword is one of the BoxMOT class's own arguments.

BoxMOT numbers its tracks from 0; the adapters report ids from 1, as ours does.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any

import numpy as np

from mtmnv3.tracking.track import TrackResult, check_number, to_numpy

__all__ = [
    "BOXMOT_INSTALL_HINT",
    "BOXMOT_VERSION",
    "BoxMOTBoTSORT",
    "BoxMOTByteTrack",
    "BoxMOTOCSort",
    "PEER_TRACKERS",
    "import_boxmot",
]

#: The BoxMOT release the adapters are written and tested against.
BOXMOT_VERSION = "25.0.0"
#: How to install it. BoxMOT 25.0.0 declares pandas<3 and opencv-python<5, which the
#: project's pins exclude; the three trackers import neither, so it goes in without
#: its declared dependencies, next to the ones they do import (the ``trackers`` extra).
BOXMOT_INSTALL_HINT = (
    "pip install -c requirements/constraints.txt -e '.[trackers]' && "
    f"pip install --no-deps boxmot=={BOXMOT_VERSION}"
)
#: Options of our own tracker that configure its association or motion model only; the peers ignore them.
_OURS_ONLY = frozenset(
    {
        "emb_weight",
        "fusion",
        "emb_momentum",
        "gate_thr",
        "gate_position_only",
        "duplicate_thr",
        "cmc",
        "kalman",
        "min_hits",
        "new_track_thr",
        "match_thr",
        "second_match_thr",
        "unconfirmed_match_thr",
        "proximity_thr",
        "appearance_thr",
    }
)
#: Frame rate that BoxMOT's ``track_buffer`` is expressed in.
_REFERENCE_FRAME_RATE = 30.0


def import_boxmot() -> Any:
    """The ``boxmot`` module, or an :class:`ImportError` that says how to install it."""
    try:
        import boxmot
        import boxmot.utils  # sets up BoxMOT's logger (INFO), which the level below then overrides
    except ImportError as err:
        raise ImportError(
            f"the BoxMOT peer trackers need the 'boxmot' package (BoxMOT {BOXMOT_VERSION}), "
            f"which could not be imported ({err}); install it with: {BOXMOT_INSTALL_HINT}"
        ) from err
    # BoxMOT logs every tracker's settings and each failed camera-motion estimate; keep errors only.
    logging.getLogger("boxmot").setLevel(logging.ERROR)
    version = getattr(boxmot, "__version__", "unknown")
    if version != BOXMOT_VERSION:
        warnings.warn(
            f"boxmot {version} is installed; the peer-tracker adapters are written for "
            f"{BOXMOT_VERSION} (pip install --no-deps boxmot=={BOXMOT_VERSION})",
            RuntimeWarning,
            stacklevel=3,
        )
    return boxmot


class _NoReID:
    """Stands in for BoxMOT's re-ID model: embeddings come from our model, never from downloaded weights."""

    def get_features(self, boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
        raise RuntimeError(
            "BoxMOTBoTSORT computes no embeddings itself: pass the model's embeddings to update(), "
            "or build it with use_embeddings=False"
        )


class _BoxMOTPeer:
    """Shared adapter: input checks, frame numbering, BoxMOT output to :class:`TrackResult`."""

    #: The BoxMOT class adapted.
    boxmot_class: str = ""
    #: Our option names -> the BoxMOT class's argument names.
    renames: dict[str, str] = {}

    def __init__(
        self,
        frame_rate: float = _REFERENCE_FRAME_RATE,
        track_buffer: int | None = None,
        use_embeddings: bool = True,
        class_aware: bool = False,
        **options: Any,
    ) -> None:
        self.frame_rate = check_number("frame_rate", frame_rate, 0.0, np.inf, low_open=True)
        self.use_embeddings = bool(use_embeddings)
        ignored = sorted(k for k in options if k in _OURS_ONLY and k not in self.renames)
        if ignored:
            warnings.warn(
                f"{type(self).__name__} ignores {', '.join(ignored)} (options of EmbeddingTracker's "
                f"association that {self.boxmot_class} has no counterpart for)",
                UserWarning,
                stacklevel=3,
            )
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            if key in ignored:
                continue
            name = self.renames.get(key, key)
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got {key!r} and {name!r}, which set the same option")
            kwargs[name] = value
        if class_aware:
            kwargs.setdefault("per_class", True)
        kwargs.update(self._rate_options(track_buffer, kwargs))
        #: Keyword arguments of the BoxMOT class (our names already translated).
        self.boxmot_kwargs = kwargs
        self._boxmot = import_boxmot()
        self._tracker = self._build(with_cmc=self.uses_frames)  # a bad argument fails here
        self._fresh = True
        self._cmc_on = False
        self._frame_id: int | None = None

    # ------------------------------------------------------------------ to override

    def _rate_options(self, track_buffer: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """BoxMOT arguments for the frame rate and track buffer (ByteTrack, BoT-SORT: theirs)."""
        out: dict[str, Any] = {"frame_rate": self.frame_rate}
        if track_buffer is not None:
            out["track_buffer"] = track_buffer
        return out

    def _extra_kwargs(self, with_cmc: bool) -> dict[str, Any]:
        return {}

    @property
    def uses_frames(self) -> bool:
        """Whether the tracker uses the frame's pixels (BoT-SORT's camera-motion compensation)."""
        return False

    @property
    def sends_embeddings(self) -> bool:
        """Whether the tracker is given the detections' embeddings."""
        return False

    # ------------------------------------------------------------------ public API

    @property
    def boxmot_tracker(self) -> Any:
        """The BoxMOT tracker of the current sequence."""
        return self._tracker

    @property
    def frame_id(self) -> int | None:
        """The latest frame processed, ``None`` after :meth:`reset`."""
        return self._frame_id

    def build_boxmot(self, with_cmc: bool | None = None) -> Any:
        """A new BoxMOT tracker with this adapter's arguments (what :meth:`reset` starts from)."""
        return self._build(self.uses_frames if with_cmc is None else with_cmc)

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1, for a new video."""
        self._tracker = self._build(with_cmc=self.uses_frames)
        self._fresh = True
        self._cmc_on = False
        self._frame_id = None

    def update(
        self,
        bboxes: Any,
        scores: Any,
        labels: Any = None,
        embeddings: Any = None,
        frame_id: int | None = None,
        frame: np.ndarray | None = None,
    ) -> TrackResult:
        """Advance to ``frame_id`` and associate this frame's detections (as :meth:`EmbeddingTracker.update`).

        Skipped frames (``frame_id`` more than one past the previous frame)
        are given to BoxMOT as frames without detections.

        Args:
            bboxes: (N, 4) ``x1, y1, x2, y2``; boxes with zero width or height are ignored.
            scores: (N,) scores in [0, 1].
            labels: (N,) non-negative integer classes, or ``None`` for all 0.
            embeddings: (N, D) embeddings (BoT-SORT with ``use_embeddings``: needed
                whenever there are detections; the others ignore them).
            frame_id: The frame, greater than the previous one; ``None`` for the previous + 1.
            frame: The frame's pixels, (H, W, 3) RGB uint8: BoT-SORT's
                camera-motion compensation; the others ignore it.

        Returns:
            The tracks BoxMOT reports for this frame, ids from 1, sorted by id.

        Raises:
            ValueError: If an input has the wrong shape or values, ``frame_id``
                does not increase, or an input BoT-SORT needs is missing.
        """
        fid = self._next_frame(frame_id)
        boxes, score_arr, label_arr, emb = self._check(bboxes, scores, labels, embeddings)
        image = self._frame_pixels(frame)
        if self._frame_id is not None:
            for _ in range(fid - self._frame_id - 1):
                self._call(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), None, image)
        result = self._call(boxes, score_arr, label_arr, emb, image)
        self._frame_id = fid
        return result

    def predict_only(self, frame_id: int | None = None, frame: np.ndarray | None = None) -> TrackResult:
        """A frame without detections: BoxMOT's trackers have no prediction-only step, so this is
        an :meth:`update` with none (tracked tracks become lost, and are not reported)."""
        return self.update(np.zeros((0, 4)), np.zeros(0), None, None, frame_id, frame)

    # ------------------------------------------------------------------ internals

    def _build(self, with_cmc: bool) -> Any:
        cls = getattr(self._boxmot, self.boxmot_class)
        kwargs = {**self.boxmot_kwargs, **self._extra_kwargs(with_cmc)}
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TypeError(
                f"bad arguments for tracker {type(self).__name__} (BoxMOT {cls.__name__}): {err}"
            ) from err

    def _next_frame(self, frame_id: int | None) -> int:
        if frame_id is None:
            return 1 if self._frame_id is None else self._frame_id + 1
        if not isinstance(frame_id, numbers.Integral) or isinstance(frame_id, bool):
            raise ValueError(f"frame_id must be an integer or None, got {frame_id!r}")
        if self._frame_id is not None and frame_id <= self._frame_id:
            raise ValueError(
                f"frame_id must increase: got {frame_id} after frame {self._frame_id} (call reset() for a new video)"
            )
        return int(frame_id)

    def _check(
        self, bboxes: Any, scores: Any, labels: Any, embeddings: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        boxes = to_numpy(bboxes, "bboxes", np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"bboxes must have shape (N, 4) (x1, y1, x2, y2), got {boxes.shape}")
        n = len(boxes)
        score_arr = to_numpy(scores, "scores", np.float64).reshape(-1) if n else np.zeros(0)
        if score_arr.shape != (n,):
            raise ValueError(f"scores must have shape (N,) with N = {n} (one per box), got {score_arr.shape}")
        if labels is None:
            label_arr = np.zeros(n, np.int64)
        else:
            raw = to_numpy(labels, "labels", np.float64).reshape(-1) if n else np.zeros(0)
            if raw.shape != (n,) or np.any(raw != np.round(raw)) or np.any(raw < 0):
                raise ValueError(f"labels must be (N,) non-negative integers with N = {n}, got {raw!r}")
            label_arr = raw.astype(np.int64)
        emb = None
        if embeddings is not None and self.sends_embeddings:
            emb = to_numpy(embeddings, "embeddings", np.float32)
            if emb.ndim != 2 or len(emb) != n or emb.shape[1] == 0:
                raise ValueError(
                    f"embeddings must have shape (N, D) with N = {n} (one per box), got {emb.shape}"
                )
        for name, arr in (("bboxes", boxes), ("scores", score_arr), ("embeddings", emb)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite, got NaN or inf")
        if np.any((score_arr < 0) | (score_arr > 1)):
            raise ValueError("scores must be in [0, 1] (BoxMOT's range)")
        if np.any((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])):
            raise ValueError("bboxes must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():
            boxes, score_arr, label_arr = boxes[keep], score_arr[keep], label_arr[keep]
            emb = None if emb is None else emb[keep]
        if self.sends_embeddings and emb is None and len(boxes):
            raise ValueError(
                f"{type(self).__name__} with use_embeddings=True needs the detections' embeddings on every "
                "frame with detections (BoxMOT would otherwise run a re-ID model of its own); "
                "build it with use_embeddings=False for detections without embeddings"
            )
        return boxes, score_arr, label_arr, emb

    def _frame_pixels(self, frame: np.ndarray | None) -> np.ndarray | None:
        """The BGR pixels BoxMOT's camera-motion compensation reads, or ``None`` when it runs without."""
        if self._fresh and self.uses_frames and frame is None:
            self._tracker = self._build(with_cmc=False)  # this sequence comes without pixels
        if self._fresh:
            self._cmc_on = self.uses_frames and frame is not None
            self._fresh = False
        if not self._cmc_on:
            return None
        if frame is None:
            raise ValueError(
                f"{type(self).__name__} runs camera-motion compensation on this sequence (its first frame "
                "came with pixels): pass frame= on every frame, or build it with cmc_method=None"
            )
        image = np.asarray(frame)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) RGB uint8 pixels, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image[..., ::-1])  # RGB -> BGR, BoxMOT's (OpenCV's) order

    def _call(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        emb: np.ndarray | None,
        image: np.ndarray | None,
    ) -> TrackResult:
        if emb is not None or (self.sends_embeddings and len(boxes) == 0):
            return self._call_structured(boxes, scores, labels, emb, image)
        dets = np.column_stack([boxes, scores, labels]).astype(np.float32).reshape(-1, 6)
        return _rows_to_result(self._tracker.update(dets, image))

    def _call_structured(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        emb: np.ndarray | None,
        image: np.ndarray | None,
    ) -> TrackResult:
        """BoxMOT's ``Detections`` path, the one that carries embeddings."""
        import torch
        from boxmot.structures import Boxes, Detections

        n = len(boxes)
        dets = Detections(
            geometry=Boxes(torch.from_numpy(np.ascontiguousarray(boxes, np.float32).reshape(n, 4))),
            scores=torch.from_numpy(np.ascontiguousarray(scores, np.float32)),
            class_ids=torch.from_numpy(np.ascontiguousarray(labels, np.int64)),
            sample_id=f"frame-{self._tracker.frame_count + 1}",
            embeddings=None if emb is None else torch.from_numpy(np.ascontiguousarray(emb, np.float32)),
        )
        tracks = self._tracker.update(dets, image)
        ids = tracks.track_ids.numpy().astype(np.int64) + 1
        order = np.argsort(ids, kind="stable")
        return TrackResult(
            ids=ids[order],
            bboxes=tracks.geometry.values.numpy().astype(np.float64).reshape(-1, 4)[order],
            scores=tracks.scores.numpy().astype(np.float64)[order],
            labels=tracks.class_ids.numpy().astype(np.int64)[order],
        )


def _rows_to_result(rows: np.ndarray) -> TrackResult:
    """BoxMOT's NumPy output ``x1, y1, x2, y2, id, conf, cls, det_ind`` as a :class:`TrackResult`."""
    rows = np.asarray(rows, np.float64).reshape(-1, 8)
    ids = rows[:, 4].astype(np.int64) + 1
    order = np.argsort(ids, kind="stable")
    return TrackResult(
        ids=ids[order],
        bboxes=rows[order, :4],
        scores=rows[order, 5],
        labels=rows[order, 6].astype(np.int64),
    )


class BoxMOTByteTrack(_BoxMOTPeer):
    """BoxMOT's ByteTrack (IoU only; two score tiers).

    Our names it translates: ``high_thr`` -> ``track_thresh`` (first
    association and births), ``low_thr`` -> ``min_conf``, ``match_thr`` ->
    ``match_thresh``, ``track_buffer`` and ``frame_rate`` (its own),
    ``class_aware`` -> ``per_class``. ``use_embeddings`` is accepted and has no
    effect (ByteTrack uses none). Other keywords go to ``boxmot.ByteTrack``.
    """

    boxmot_class = "ByteTrack"
    renames = {"high_thr": "track_thresh", "low_thr": "min_conf", "match_thr": "match_thresh"}


class BoxMOTOCSort(_BoxMOTPeer):
    """BoxMOT's OC-SORT (IoU plus motion direction; observation-centric re-update).

    Our names it translates: ``high_thr`` -> ``det_thresh``, ``low_thr`` ->
    ``min_conf`` (used with ``use_byte=True``), ``min_hits``, ``class_aware``
    -> ``per_class``, and ``track_buffer`` (at 30 fps, default 30) with
    ``frame_rate`` -> ``max_age = int(frame_rate / 30 * track_buffer)``.
    ``use_embeddings`` has no effect. Other keywords go to ``boxmot.OcSort``.
    """

    boxmot_class = "OcSort"
    renames = {"high_thr": "det_thresh", "low_thr": "min_conf", "min_hits": "min_hits"}

    def _rate_options(self, track_buffer: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "max_age" in kwargs:
            if track_buffer is not None:
                raise TypeError("BoxMOTOCSort got track_buffer and max_age, which set the same option")
            return {}
        buffer = 30 if track_buffer is None else track_buffer
        return {"max_age": int(self.frame_rate / _REFERENCE_FRAME_RATE * buffer)}


class BoxMOTBoTSORT(_BoxMOTPeer):
    """BoxMOT's BoT-SORT with our model's embeddings and BoxMOT's camera-motion compensation.

    Our names it translates: ``high_thr`` -> ``track_high_thresh``,
    ``low_thr`` -> ``track_low_thresh``, ``new_track_thr`` ->
    ``new_track_thresh``, ``match_thr`` -> ``match_thresh``,
    ``second_match_thr`` / ``unconfirmed_match_thr`` -> ``*_thresh``,
    ``proximity_thr`` / ``appearance_thr`` -> ``*_thresh``, ``use_embeddings``,
    ``track_buffer``, ``frame_rate``, ``class_aware`` -> ``per_class``.

    Args:
        cmc_method: BoxMOT's camera-motion compensation, ``'sof'`` (sparse
            optical flow, the default here), ``'ecc'`` (BoxMOT's default),
            ``'orb'`` or ``'sift'``; ``None`` for none. It runs on sequences
            whose frames come with pixels. BoxMOT estimates on the frame
            shrunk to 0.15 of its size, made for HD video: on our 192-320 px
            frames ECC (on 29-48 px) mostly fails or misleads (at 192 px,
            23 ID switches against 0 with ``'sof'`` on one generated 60-frame
            sequence with a moving camera), and
            ``'sof'`` needs frames of at least about 100 px.
        **options: the options above, or ``boxmot.BotSort``'s own arguments.
    """

    boxmot_class = "BotSort"
    renames = {
        "high_thr": "track_high_thresh",
        "low_thr": "track_low_thresh",
        "new_track_thr": "new_track_thresh",
        "match_thr": "match_thresh",
        "second_match_thr": "second_match_thresh",
        "unconfirmed_match_thr": "unconfirmed_match_thresh",
        "proximity_thr": "proximity_thresh",
        "appearance_thr": "appearance_thresh",
    }

    def __init__(self, cmc_method: str | None = "sof", **options: Any) -> None:
        if "use_cmc" in options or "reid_model" in options or "reid_weights" in options:
            raise TypeError(
                "BoxMOTBoTSORT sets use_cmc from cmc_method (None: off) and never loads a re-ID model; "
                "got " + ", ".join(k for k in ("use_cmc", "reid_model", "reid_weights") if k in options)
            )
        self.cmc_method = cmc_method
        super().__init__(**options)

    def _extra_kwargs(self, with_cmc: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "use_embeddings": self.use_embeddings,
            "use_cmc": bool(with_cmc and self.cmc_method is not None),
        }
        if self.cmc_method is not None:
            out["cmc_method"] = self.cmc_method
        if self.use_embeddings:
            out["reid_model"] = _NoReID()
        return out

    @property
    def uses_frames(self) -> bool:
        return self.cmc_method is not None

    @property
    def sends_embeddings(self) -> bool:
        return self.use_embeddings


#: The peer trackers by config ``type``.
PEER_TRACKERS: dict[str, type[_BoxMOTPeer]] = {
    "BoxMOTByteTrack": BoxMOTByteTrack,
    "BoxMOTOCSort": BoxMOTOCSort,
    "BoxMOTBoTSORT": BoxMOTBoTSORT,
}
