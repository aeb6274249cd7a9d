"""Video I/O for the demo: readers, the latest-frame camera thread, atomic writer, overlay."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from mtmnv3.runtime.video import (
    AtomicVideoWriter,
    LatestFrameReader,
    VideoFileReader,
    VideoSourceError,
    open_source,
)
from mtmnv3.runtime.visualize import draw_status, draw_tracks, id_color


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 0] = (40 + 10 * i) % 256  # red ramps with the frame index
        cv2.rectangle(img, (4 + i, 4), (20 + i, 20), (0, 255, 0), -1)
        out.append(img)
    return out


def _write(path, frames, fps=10.0):
    with AtomicVideoWriter(path, fps=fps) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_write_read_roundtrip(tmp_path, suffix):
    frames = _frames(8)
    path = _write(tmp_path / f"v{suffix}", frames)
    assert path.is_file() and not list(tmp_path.glob(".*"))  # no temp file left behind
    reader = VideoFileReader(path)
    assert reader.size == (64, 48)
    got = list(reader)
    assert [f.index for f in got] == list(range(8))
    for f, ref in zip(got, frames):
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        # RGB order survives (lossy codec: compare the mean of the red channel)
        assert abs(float(f.image[30:, 30:, 0].mean()) - float(ref[30:, 30:, 0].mean())) < 12


def test_max_frames_and_odd_size(tmp_path):
    # codecs need even sizes: the writer pads an odd frame by one edge pixel
    path = _write(tmp_path / "odd.avi", _frames(6, h=37, w=53))
    got = list(VideoFileReader(path, max_frames=4))
    assert len(got) == 4 and got[0].image.shape[:2] == (38, 54)


def test_writer_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.avi"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicVideoWriter(target, fps=10) as w:
            w.write(_frames(1)[0])
            raise RuntimeError("boom")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_writer_bad_args(tmp_path):
    with pytest.raises(ValueError, match="unsupported video suffix"):
        AtomicVideoWriter(tmp_path / "x.gif", fps=10)
    with pytest.raises(ValueError, match="fps must be > 0"):
        AtomicVideoWriter(tmp_path / "x.avi", fps=0)


def test_missing_and_corrupt_video(tmp_path):
    with pytest.raises(VideoSourceError, match="video file not found"):
        VideoFileReader(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoSourceError, match="cannot (open|read)"):
        VideoFileReader(bad)


def test_open_source_needs_exactly_one(tmp_path):
    with pytest.raises(VideoSourceError, match="exactly one source"):
        open_source()
    with pytest.raises(VideoSourceError, match="exactly one source"):
        open_source(camera_id=0, video=tmp_path / "a.mp4")


def test_camera_that_cannot_open():
    with pytest.raises(VideoSourceError, match="cannot open camera 97"):
        open_source(camera_id=97)


class _SlowCapture:
    """A real OpenCV capture on a file, paced like a camera (fixed frame period)."""

    def __init__(self, path, period_s):
        self.cap = cv2.VideoCapture(str(path))
        self.period_s = period_s

    def isOpened(self):  # noqa: N802 - OpenCV's API
        return self.cap.isOpened()

    def get(self, prop):
        return self.cap.get(prop)

    def read(self):
        time.sleep(self.period_s)
        return self.cap.read()

    def release(self):
        self.cap.release()


def test_latest_frame_reader_drops_instead_of_lagging(tmp_path):
    path = _write(tmp_path / "cam.avi", _frames(40))
    reader = LatestFrameReader(0, capture=_SlowCapture(path, 0.005))
    seen = []
    for frame in reader:
        seen.append(frame.index)
        time.sleep(0.03)  # a consumer ~6x slower than the camera
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert reader.dropped > 0 and len(seen) + reader.dropped == seen[-1] + 1
    # the consumer always gets a recent frame: never more than a few frames behind
    assert seen[-1] >= 30


def test_overlay_draws_in_place():
    img = np.zeros((120, 160, 3), np.uint8)
    draw_tracks(img, np.array([[10, 10, 60, 70]]), ids=[3], labels=[1], scores=[0.9], class_names=["a", "b"])
    assert img.any()
    assert tuple(img[40, 10]) == id_color(3)  # left edge in the track's colour
    before = img.copy()
    draw_status(img, ["label: b", "12.0 FPS"])
    assert not np.array_equal(before, img)
    assert id_color(3) != id_color(4)
