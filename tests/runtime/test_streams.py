"""Network streams against a real server: ffmpeg serving a video over HTTP on 127.0.0.1.

The reader opens it, reads it in real time, reopens it with backoff when the
server goes away and comes back, gives up (with the reason) when it does not,
and names why a stream cannot be opened (connection refused, unknown host,
not a video). The pull interface (``poll``/``ended``) that several sources in
one process use is checked on every reader kind.
"""

from __future__ import annotations

import http.server
import threading
import time

import cv2
import numpy as np
import pytest

from mtmnv3.runtime.stream_server import FFmpegStream, StreamServerError, ffmpeg_path, free_port
from mtmnv3.runtime.video import (
    AtomicVideoWriter,
    ImageFolderReader,
    LatestFrameReader,
    Reconnect,
    VideoFileReader,
    VideoSourceError,
    open_source,
)

needs_ffmpeg = pytest.mark.skipif(
    ffmpeg_path() is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"
)


def _video(path, n=30, size=(160, 96), fps=30.0):
    """A clip whose frames carry their index: a white bar whose x position moves 4 px per frame."""
    w, h = size
    with AtomicVideoWriter(path, fps=fps) as writer:
        for i in range(n):
            img = np.full((h, w, 3), 40, np.uint8)
            img[:, (4 * i) % (w - 8) : (4 * i) % (w - 8) + 8] = 255
            writer.write(img)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("streams") / "clip.mp4")


@needs_ffmpeg
def test_a_served_stream_is_read_live_at_its_size_and_rate(clip):
    with FFmpegStream(clip) as server:
        reader = open_source(server.url, max_frames=45)
        assert isinstance(reader, LatestFrameReader) and reader.size == (160, 96)
        assert reader.fps == pytest.approx(30.0, rel=0.01)
        t0 = time.perf_counter()
        frames = list(reader)
        wall = time.perf_counter() - t0
    assert len(frames) == 45 and [f.index for f in frames] == sorted({f.index for f in frames})
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    # real time (-re): 45 frames at 30 FPS take about 1.5 s, not the few ms of decoding a file
    assert wall > 0.8
    assert reader.ended and reader.error is None and reader.reconnects == 0


@needs_ffmpeg
def test_a_stream_that_drops_is_reopened_with_backoff(clip):
    server = FFmpegStream(clip).start()
    try:
        reader = open_source(server.url, reconnect=Reconnect(attempts=8, backoff_s=0.2, max_backoff_s=1.0))
        got = []
        restarted = False
        deadline = time.monotonic() + 40
        while len(got) < 60 and time.monotonic() < deadline:
            frame = reader.poll()
            if frame is None:
                assert not reader.ended, reader.error
                time.sleep(0.005)
                continue
            got.append(frame)
            if len(got) == 15 and not restarted:
                server.stop()  # the stream drops ...
                time.sleep(0.5)
                server.start()  # ... and comes back on the same address
                restarted = True
        reader.close()
    finally:
        server.stop()
    assert len(got) == 60, f"stream did not come back: {reader.error}"
    assert reader.reconnects >= 1 and reader.outage_s > 0.2
    assert reader.error is None


@needs_ffmpeg
def test_a_stream_that_does_not_come_back_ends_with_the_reason(clip):
    server = FFmpegStream(clip).start()
    try:
        reader = open_source(server.url, reconnect=Reconnect(attempts=2, backoff_s=0.1, max_backoff_s=0.2))
        assert reader.poll() is not None or not reader.ended
        server.stop()
        deadline = time.monotonic() + 30
        while not reader.ended and time.monotonic() < deadline:
            reader.poll()
            time.sleep(0.01)
    finally:
        server.stop()
    assert reader.ended
    assert "did not come back after 2 reconnect attempt(s)" in reader.error
    assert "connection refused" in reader.error
    assert reader.reconnects == 0


def test_why_a_stream_cannot_be_opened_is_named(tmp_path):
    port = free_port()
    with pytest.raises(
        VideoSourceError, match=rf"cannot open stream .*: connection refused by 127\.0\.0\.1:{port}"
    ):
        open_source(f"http://127.0.0.1:{port}/live.ts")
    with pytest.raises(VideoSourceError, match="unknown host 'no-such-camera.invalid'"):
        open_source("rtsp://no-such-camera.invalid/stream")
    # a web server that answers with a page, not a video
    (tmp_path / "index.html").write_text("<html>not a video</html>" * 50)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(VideoSourceError, match="the server answered but OpenCV could not read a video"):
            open_source(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
    finally:
        httpd.shutdown()


def test_serving_needs_an_existing_video(tmp_path):
    with pytest.raises(StreamServerError, match="video to serve not found"):
        FFmpegStream(tmp_path / "missing.mp4")


def test_reconnect_settings_are_checked():
    with pytest.raises(ValueError, match="attempts >= 0"):
        Reconnect(attempts=-1)
    with pytest.raises(ValueError, match="backoff_s <= max_backoff_s"):
        Reconnect(backoff_s=2.0, max_backoff_s=1.0)
    assert list(Reconnect(attempts=5, backoff_s=0.5, max_backoff_s=3.0).delays()) == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_every_reader_has_the_pull_interface(tmp_path, clip):
    """poll() gives the next frame, None at the end, and ended turns true: files and image folders."""
    video = VideoFileReader(clip, max_frames=5)
    got = [video.poll() for _ in range(7)]
    assert [f.index for f in got if f is not None] == [0, 1, 2, 3, 4] and got[5] is None and video.ended
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((8, 8, 3), 50 * k, np.uint8))
    images = ImageFolderReader(folder)
    assert [images.poll().index for _ in range(3)] == [0, 1, 2]
    assert images.poll() is None and images.ended
    (folder / "3.png").write_bytes(b"broken")
    broken = ImageFolderReader(folder)
    for _ in range(3):
        broken.poll()
    with pytest.raises(VideoSourceError, match=r"cannot read image '.*3\.png'"):
        broken.poll()
