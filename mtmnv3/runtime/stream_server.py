"""A live network stream of a video file, served with ffmpeg (tests, benchmarks, trying a set-up).

:class:`FFmpegStream` runs ``ffmpeg -re -stream_loop -1 -i VIDEO ... -f mpegts
-listen 1 http://HOST:PORT/live.ts``: ffmpeg itself is the HTTP server, sending
the video in real time (``-re``), looped, as H.264 in MPEG-TS, the way an IP
camera or a restreamer does. It serves one client per start; :meth:`stop` and
:meth:`start` on the same port simulate a stream that drops and comes back.
ffmpeg is a system package (Debian's ``ffmpeg``); :func:`ffmpeg_path` says
whether it is there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["FFmpegStream", "StreamServerError", "ffmpeg_path", "free_port"]


class StreamServerError(RuntimeError):
    """ffmpeg is missing, or the server did not start."""


def ffmpeg_path() -> str | None:
    """The ``ffmpeg`` executable on PATH, or ``None``."""
    return shutil.which("ffmpeg")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class FFmpegStream:
    """``video`` served as a looping real-time HTTP MPEG-TS stream at :attr:`url`.

    Args:
        video: a video file ffmpeg can read.
        port: TCP port (default: a free one).
        host: interface to listen on (loopback by default).
        fps: play the file at this frame rate (faster or slower than its own; default its own).
        gop: frames between key frames (a reconnecting client waits for one).

    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        video: str | os.PathLike,
        port: int | None = None,
        host: str = "127.0.0.1",
        fps: float | None = None,
        gop: int = 15,
    ) -> None:
        self.video = Path(video)
        if not self.video.is_file():
            raise StreamServerError(f"video to serve not found: {str(self.video)!r}")
        exe = ffmpeg_path()
        if exe is None:
            raise StreamServerError("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
        self.exe = exe
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.fps = fps
        self.gop = int(gop)
        self.url = f"http://{host}:{self.port}/live.ts"
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        pace, retime = ["-re"], []
        if self.fps:
            import cv2

            cap = cv2.VideoCapture(str(self.video))
            own = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
            cap.release()
            speed = self.fps / own  # read the file this much faster than real time, with timestamps to match
            pace = ["-readrate", f"{speed:g}"]
            retime = ["-vf", f"setpts=PTS/{speed:g}", "-r", f"{self.fps:g}"]
        return [
            self.exe, "-nostdin", "-v", "error", *pace, "-stream_loop", "-1", "-i", str(self.video),
            *retime, "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", str(self.gop), "-pix_fmt", "yuv420p",
            "-flush_packets", "1", "-f", "mpegts", "-listen", "1", self.url,
        ]  # fmt: skip

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> FFmpegStream:
        """Start ffmpeg and wait until it listens (a :class:`StreamServerError` with its log otherwise)."""
        if self.running:
            return self
        self._proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
                self._proc = None
                raise StreamServerError(f"ffmpeg exited while starting to serve {self.url}: {err[-500:]}")
            if _listening(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise StreamServerError(f"ffmpeg did not listen on {self.host}:{self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop serving (the connected client sees the stream drop)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> FFmpegStream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(host: str, port: int) -> bool:
    """Whether a server listens on ``host:port``, or already has its client (without connecting:
    ffmpeg ``-listen 1`` serves only its first client, so a probe connection would use it up;
    and once a reconnecting client got in first, the port no longer listens)."""
    try:
        table = Path("/proc/net/tcp").read_text()
    except OSError:  # not Linux: give ffmpeg a moment instead
        time.sleep(0.5)
        return True
    want = f":{port:04X}"
    # columns: sl, local address (hex ip:port), remote address, state (0A = LISTEN, 01 = ESTABLISHED)
    return any(
        cols[1].endswith(want) and cols[3] in ("0A", "01")
        for cols in (line.split() for line in table.splitlines()[1:])
        if len(cols) > 3
    )
