"""Video input and output for the live demo.

* :class:`LatestFrameReader` reads a camera or a network stream in a
  background thread and keeps only the newest frame, so a slow consumer never
  sees a growing lag: frames that arrive while the model is busy are dropped,
  not queued. A stream that stops delivering is reopened with exponential
  backoff (:class:`Reconnect`); the reader counts its reconnects and the time
  it spent without a connection.
* :class:`VideoFileReader` reads every frame of a file in order (no drops;
  the file's frames are the evaluation ground truth).
* :class:`ImageFolderReader` reads a folder of images (jpg/png/bmp), or the
  files a glob pattern matches, in sorted name order, like a video file.
* :func:`open_source` turns one ``--source`` string (camera index, video file,
  folder of images, glob pattern, rtsp/http(s) URL) -- or ``--camera-id`` / ``--video`` --
  into one of them and raises :class:`VideoSourceError` with a message naming
  the source and the problem (missing file, unreadable codec, camera or
  stream that cannot be opened, folder without images).
* :class:`AtomicVideoWriter` writes to a temp file next to the target and
  renames it on success, so a crash never leaves a half-written video.

Every reader has the same pull interface for running several sources in one
process: :meth:`poll` returns the next frame to process or ``None`` when a
live source has nothing new yet, and ``ended`` turns true when the source is
finished (``error`` then says why, if it failed); a live reader sets its
``notify`` event whenever a frame arrives, so a consumer of several sources can
sleep until any of them has one.

Frames are RGB ``uint8`` ``(H, W, 3)`` arrays everywhere in the package;
OpenCV's BGR stays inside this module.
"""

from __future__ import annotations

import glob
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

__all__ = [
    "Frame",
    "VideoSourceError",
    "LatestFrameReader",
    "Reconnect",
    "VideoFileReader",
    "ImageFolderReader",
    "IMAGE_SUFFIXES",
    "STREAM_SCHEMES",
    "open_source",
    "AtomicVideoWriter",
    "display_available",
    "is_glob",
    "write_sequence_video",
]

# ffmpeg (inside OpenCV) logs every failed connection and decoding hiccup to stderr, repeating
# what the errors below say (and once per reconnect attempt): quiet unless the user set a level.
# OpenCV reads it when its ffmpeg backend is first used, so it is set when this module loads.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

#: Seconds to wait for a camera's first frame before calling it unusable.
CAMERA_FIRST_FRAME_TIMEOUT_S = 5.0
#: Image files a folder source reads (lower-case suffixes).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png")
#: URL schemes opened as network streams.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
#: Seconds OpenCV may spend opening a stream, and waiting for one read, before giving up.
STREAM_TIMEOUT_S = 10.0
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


class VideoSourceError(RuntimeError):
    """A camera or video that cannot be opened or read."""


@dataclass
class Frame:
    """One frame: RGB pixels, its index in the source, and the capture time
    (``time.perf_counter()`` seconds)."""

    index: int
    image: np.ndarray
    timestamp: float


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class VideoFileReader:
    """Every frame of a video file, in order, as :class:`Frame` (RGB)."""

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise VideoSourceError(f"video file not found: {str(path)!r} (expected a readable video file)")
        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise VideoSourceError(
                f"cannot open video {str(path)!r}: OpenCV has no reader for it (unknown container or codec)"
            )
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise VideoSourceError(f"cannot read any frame from video {str(path)!r} (empty or corrupt file)")
        self._first = first
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.size = (first.shape[1], first.shape[0])  # (w, h)
        self.max_frames = max_frames
        self.dropped = 0
        self.ended = False
        self.error: str | None = None
        self._pending: np.ndarray | None = first
        self._index = 0

    def poll(self) -> Frame | None:
        """The next frame in order (``None`` and ``ended`` once the file or ``max_frames`` is done)."""
        if self.ended:
            return None
        if self._pending is None:
            ok, bgr = self.cap.read()
            self._pending = bgr if ok else None
        if self._pending is None or (self.max_frames is not None and self._index >= self.max_frames):
            self.close()
            return None
        frame = Frame(self._index, _to_rgb(self._pending), time.perf_counter())
        self._pending = None
        self._index += 1
        return frame

    def __iter__(self) -> Iterator[Frame]:
        try:
            while (frame := self.poll()) is not None:
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        self.ended = True
        self.cap.release()


@dataclass(frozen=True)
class Reconnect:
    """How a live stream that stops delivering is reopened.

    After a failed read the reader waits ``backoff_s``, then twice as long after
    each failed attempt (at most ``max_backoff_s``), and gives up after
    ``attempts`` failed attempts in a row (``0``: never reopen).
    """

    attempts: int = 8
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or not self.backoff_s > 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError(f"Reconnect needs attempts >= 0 and 0 < backoff_s <= max_backoff_s, got {self}")

    def delays(self) -> Iterator[float]:
        """The waits before each attempt."""
        delay = self.backoff_s
        for _ in range(self.attempts):
            yield delay
            delay = min(2.0 * delay, self.max_backoff_s)


class LatestFrameReader:
    """A camera or stream read in a background thread that keeps only the newest frame.

    :meth:`poll` (and :meth:`__iter__`, which blocks) return a frame newer than
    the last one returned, so the consumer always processes the most recent
    image; the frames it never saw are counted in :attr:`dropped`. With
    ``reopen`` (a function returning a new ``cv2.VideoCapture``) a source that
    stops delivering is reopened as ``reconnect`` says; :attr:`reconnects`
    counts the successful reopenings and :attr:`outage_s` the seconds spent
    without frames. When the reader gives up, :attr:`error` says why.
    """

    def __init__(
        self,
        camera_id: int | str,
        max_frames: int | None = None,
        first_frame_timeout_s: float = CAMERA_FIRST_FRAME_TIMEOUT_S,
        capture: cv2.VideoCapture | None = None,
        reopen: Callable[[], cv2.VideoCapture] | None = None,
        reconnect: Reconnect | None = None,
        notify: threading.Event | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.kind = "camera" if reopen is None else "stream"
        self.cap = capture if capture is not None else cv2.VideoCapture(int(camera_id))
        if not self.cap.isOpened():
            raise VideoSourceError(
                f"cannot open camera {camera_id}: no such device or it is busy "
                "(expected a camera index OpenCV can open, e.g. 0)"
            )
        self.max_frames = max_frames
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or 30.0
        if not 0 < self.fps <= 240:  # some streams report 1000 or 90000 (a time base, not a rate)
            self.fps = 30.0
        self.notify = notify
        self._reopen = reopen
        self._reconnect = reconnect if reconnect is not None else Reconnect(attempts=0)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stopped = False
        self._closing = False
        self.error: str | None = None
        self._read_count = 0
        self._last_served = -1
        self._served = 0
        self.dropped = 0
        self.reconnects = 0
        self.outage_s = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{camera_id}", daemon=True)
        self._thread.start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._latest is not None or self._stopped, timeout=first_frame_timeout_s
            )
            if self._latest is None:
                why = f": {self.error}" if self.error else ""
                self.close()
                raise VideoSourceError(
                    f"{self.kind} {camera_id} opened but delivered no frame within {first_frame_timeout_s:.0f} s{why}"
                )
        self.size = (self._latest.image.shape[1], self._latest.image.shape[0])

    @property
    def ended(self) -> bool:
        """True once nothing more will come: closed, failed, or ``max_frames`` served."""
        if self.max_frames is not None and self._served >= self.max_frames:
            return True
        with self._cond:
            return self._stopped and (self._latest is None or self._latest.index <= self._last_served)

    def _signal(self) -> None:
        self._cond.notify_all()
        if self.notify is not None:
            self.notify.set()

    def _read(self) -> np.ndarray | None:
        ok, bgr = self.cap.read()
        return bgr if ok and bgr is not None else None

    def _recover(self) -> np.ndarray | None:
        """Reopen the source with backoff; its first frame, or ``None`` when giving up or closing."""
        self.cap.release()
        t0 = time.perf_counter()
        tries = 0
        for delay in self._reconnect.delays():
            with self._cond:
                if self._cond.wait_for(lambda: self._closing, timeout=delay):
                    return None
            tries += 1
            try:
                cap = self._reopen()
            except VideoSourceError as err:
                self.error = str(err)
                continue
            if cap.isOpened():
                self.cap = cap
                bgr = self._read()
                if bgr is not None:
                    self.error = None  # the failed attempts before this one are history
                    self.reconnects += 1
                    self.outage_s += time.perf_counter() - t0
                    return bgr
            cap.release()
        self.outage_s += time.perf_counter() - t0
        reason = f" (last: {self.error})" if self.error else ""
        self.error = (
            f"{self.kind} {self.camera_id} stopped delivering frames and did not come back after "
            f"{tries} reconnect attempt(s) over {time.perf_counter() - t0:.1f} s{reason}"
        )
        return None

    def _run(self) -> None:
        while not self._closing:
            bgr = self._read()
            if bgr is None and not self._closing:
                if self._reopen is not None and self._reconnect.attempts > 0:
                    bgr = self._recover()
                elif self.error is None:
                    self.error = f"{self.kind} {self.camera_id} stopped delivering frames"
            if bgr is None:
                with self._cond:
                    self._stopped = True
                    self._signal()
                return
            frame = Frame(self._read_count, _to_rgb(bgr), time.perf_counter())
            self._read_count += 1
            with self._cond:
                self._latest = frame
                self._signal()

    def _take(self) -> Frame | None:
        """The newest frame if it is newer than the last one served (the lock is held)."""
        frame = self._latest
        if frame is None or frame.index <= self._last_served:
            return None
        self.dropped += frame.index - self._last_served - 1
        self._last_served = frame.index
        self._served += 1
        return frame

    def reset_counts(self) -> None:
        """Start counting drops now: frames read before (while the consumer was still setting
        up, or the burst a stream server sends on connecting) are not counted as dropped."""
        with self._cond:
            if self._latest is not None:
                self._last_served = max(self._last_served, self._latest.index - 1)
            self.dropped = 0

    def poll(self) -> Frame | None:
        """The newest frame if one arrived since the last call, else ``None`` (never blocks)."""
        if self.max_frames is not None and self._served >= self.max_frames:
            return None
        with self._cond:
            return self._take()

    def __iter__(self) -> Iterator[Frame]:
        try:
            while self.max_frames is None or self._served < self.max_frames:
                with self._cond:
                    self._cond.wait_for(
                        lambda: (
                            self._stopped
                            or (self._latest is not None and self._latest.index > self._last_served)
                        )
                    )
                    frame = self._take()
                if frame is None:
                    break  # stopped, nothing new
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._stopped = True
            self._signal()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.cap.release()


class ImageFolderReader:
    """Every image of a folder (``IMAGE_SUFFIXES``), or every file a glob pattern matches
    (``frames/*.jpg``), in sorted name order, as :class:`Frame` (RGB)."""

    def __init__(self, folder: str | os.PathLike, max_frames: int | None = None, fps: float = 30.0) -> None:
        text = os.fspath(folder)
        if is_glob(text):
            self.paths = sorted(
                Path(p)
                for p in glob.glob(text)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES
            )
            if not self.paths:
                raise VideoSourceError(
                    f"no image matches the pattern {text!r} (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
                )
            folder = Path(text)
        else:
            folder = Path(text)
            if not folder.is_dir():
                raise VideoSourceError(f"image folder not found: {text!r}")
            self.paths = sorted(
                p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self.paths:
                raise VideoSourceError(
                    f"folder {text!r} holds no images (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
                )
        self.folder = folder
        first = self._read(self.paths[0])
        self.size = (first.shape[1], first.shape[0])  # (w, h)
        self.fps = float(fps)
        self.frame_count = len(self.paths)
        self.max_frames = max_frames
        self.dropped = 0
        self.ended = False
        self.error: str | None = None
        self._index = 0

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoSourceError(f"cannot read image {str(path)!r} (corrupt or not an image)")
        return bgr

    def poll(self) -> Frame | None:
        """The next image in name order (``None`` and ``ended`` after the last one)."""
        limit = len(self.paths) if self.max_frames is None else min(len(self.paths), self.max_frames)
        if self._index >= limit:
            self.ended = True
            return None
        frame = Frame(self._index, _to_rgb(self._read(self.paths[self._index])), time.perf_counter())
        self._index += 1
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.poll()) is not None:
            yield frame

    def close(self) -> None:
        """Nothing to release (kept for the source interface)."""
        self.ended = True


def _stream_unreachable(url: str, timeout_s: float = 3.0) -> str | None:
    """Why a stream URL's server cannot be reached (unknown host, connection refused, ...), or ``None``."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "the URL has no host"
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    except ValueError:
        return f"the URL's port is not a number: {parts.netloc!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"unknown host {host!r}"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (no server listening there)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:.0f} s"
    except OSError as err:
        return f"cannot connect to {host}:{port}: {err.strerror or err}"


def _capture_stream(url: str, timeout_s: float = STREAM_TIMEOUT_S) -> cv2.VideoCapture:
    """An opened OpenCV capture of ``url``; a :class:`VideoSourceError` naming the reason otherwise.

    The server is probed only after OpenCV failed (to say why): a probe before
    would use up a server that serves one client.
    """
    ms = int(timeout_s * 1000)
    # OpenCV's own warning of a failed open would repeat the error below (and every reconnect's).
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
    try:
        cap = cv2.VideoCapture(
            url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )
    finally:
        cv2.utils.logging.setLogLevel(level)
    if cap.isOpened():
        return cap
    cap.release()
    why = _stream_unreachable(url)
    raise VideoSourceError(
        f"cannot open stream {url!r}: "
        + (
            why
            or "the server answered but OpenCV could not read a video from it "
            "(not a video stream, or a codec it cannot decode)"
        )
    )


def _open_stream(
    url: str, max_frames: int | None, reconnect: Reconnect | None, notify: threading.Event | None
) -> LatestFrameReader:
    return LatestFrameReader(
        url,
        max_frames=max_frames,
        first_frame_timeout_s=STREAM_TIMEOUT_S,
        capture=_capture_stream(url),
        reopen=lambda: _capture_stream(url),
        reconnect=reconnect if reconnect is not None else Reconnect(),
        notify=notify,
    )


def open_source(
    source: str | int | os.PathLike | None = None,
    *,
    camera_id: int | None = None,
    video: str | os.PathLike | None = None,
    max_frames: int | None = None,
    reconnect: Reconnect | None = None,
    notify: threading.Event | None = None,
) -> VideoFileReader | ImageFolderReader | LatestFrameReader:
    """The demo's frame source, from exactly one of ``source``, ``camera_id`` or ``video``.

    ``source`` is read as: an integer (``"0"``) -> that camera; an
    ``rtsp(s)://`` or ``http(s)://`` URL -> a network stream (read like a
    camera, newest frame only, reopened as ``reconnect`` says when it drops:
    default :class:`Reconnect`); an existing folder -> its images in sorted
    order; a glob pattern (``frames/*.jpg``) -> the files it matches, in
    sorted order; an existing file -> a video. Live readers set ``notify`` on every
    frame they receive.

    Raises:
        VideoSourceError: none or several sources given, or the source cannot
            be opened (the message names it and why).
    """
    if sum(s is not None for s in (source, camera_id, video)) != 1:
        raise VideoSourceError(
            "give exactly one source: a camera index, a video file, a folder of images or a stream URL"
        )
    if video is not None:
        return VideoFileReader(video, max_frames=max_frames)
    if camera_id is not None:
        return LatestFrameReader(int(camera_id), max_frames=max_frames, notify=notify)
    if isinstance(source, int):
        return LatestFrameReader(source, max_frames=max_frames, notify=notify)
    text = os.fspath(source).strip()
    if text.isdigit():
        return LatestFrameReader(int(text), max_frames=max_frames, notify=notify)
    if text.lower().startswith(STREAM_SCHEMES):
        return _open_stream(text, max_frames, reconnect, notify)
    if "://" in text:
        raise VideoSourceError(
            f"cannot open source {text!r}: unsupported URL scheme (expected one of {', '.join(STREAM_SCHEMES)})"
        )
    path = Path(text)
    if path.is_dir() or (is_glob(text) and not path.exists()):
        return ImageFolderReader(text, max_frames=max_frames)
    if path.is_file():
        return VideoFileReader(path, max_frames=max_frames)
    raise VideoSourceError(
        f"source not found: {text!r} (expected a camera index, an existing video file or folder of images, "
        "a glob pattern of images such as 'frames/*.jpg', or an rtsp:// / http(s):// URL)"
    )


def is_glob(text: str) -> bool:
    """Whether a source string is a glob pattern (``*``, ``?`` or ``[``) rather than a path."""
    return any(c in text for c in "*?[")


def display_available() -> bool:
    """Whether a window can be shown (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class AtomicVideoWriter:
    """Write RGB frames to a video file atomically (temp file, then rename).

    The codec is chosen from the suffix (``.mp4`` -> ``mp4v``, ``.avi`` ->
    ``MJPG``). The codecs need even sizes, so an odd width or height is padded
    by one edge pixel; frames of another size are resized to the first one's.
    Use as a context manager: on an exception the temp file is removed and
    ``path`` is left untouched.
    """

    CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in self.CODECS:
            raise ValueError(
                f"unsupported video suffix {suffix!r} for {str(path)!r}; expected one of {sorted(self.CODECS)}"
            )
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.fps = float(fps)
        self.fourcc = cv2.VideoWriter_fourcc(*self.CODECS[suffix])
        self._writer: cv2.VideoWriter | None = None
        self._tmp: str | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
            )
            os.close(fd)
            self.size = (rgb.shape[1] + rgb.shape[1] % 2, rgb.shape[0] + rgb.shape[0] % 2)
            self._writer = cv2.VideoWriter(self._tmp, self.fourcc, self.fps, self.size)
            if not self._writer.isOpened():
                self._discard()
                raise VideoSourceError(f"OpenCV cannot write {self.path.suffix} video to {str(self.path)!r}")
        h, w = rgb.shape[:2]
        if (w + w % 2, h + h % 2) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        elif (w, h) != self.size:
            rgb = cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None

    def close(self) -> None:
        """Finish the file and move it into place (no file when no frame was written)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()


def write_sequence_video(
    seq_dir: str | os.PathLike, out: str | os.PathLike, max_frames: int | None = None
) -> int:
    """Encode a MOTChallenge sequence folder (``img1/`` + ``seqinfo.ini``) as a video.

    Returns the number of frames written; the file appears atomically.
    """
    from mtmnv3.data.mot import read_seqinfo

    seq_dir = Path(seq_dir)
    info = read_seqinfo(seq_dir / "seqinfo.ini")
    n = info.seq_length if max_frames is None else min(info.seq_length, max_frames)
    with AtomicVideoWriter(out, fps=float(info.frame_rate or 30)) as writer:
        for frame in range(1, n + 1):
            path = info.frame_path(seq_dir, frame)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise VideoSourceError(
                    f"cannot read frame {frame} of sequence {str(seq_dir)!r}: {str(path)!r}"
                )
            writer.write(_to_rgb(bgr))
    return n
