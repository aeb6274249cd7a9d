"""MOTChallenge text rows: the one line parser, reader and writer of ``gt.txt`` and result files.

One row per box, comma separated (tabs and spaces are accepted on reading):
``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z`` for
results; ground truth uses ``frame, id, left, top, width, height, mark,
class, visibility`` where ``mark == 0`` flags a box that is not evaluated.
Frames are 1-based.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from mtmnv3.core.fileio import atomic_open
from mtmnv3.data.common import DataError

__all__ = [
    "GT_COLUMNS",
    "MOT_MIN_COLUMNS",
    "MOT_RESULT_COLUMNS",
    "MOTFormatError",
    "format_gt_rows",
    "iter_mot_rows",
    "load_mot_txt",
    "parse_mot_line",
    "write_mot_txt",
]

#: frame, id, left, top, width, height: the columns every MOTChallenge row must have.
MOT_MIN_COLUMNS = 6
#: Columns of a MOTChallenge result row (the last three are unused world coordinates).
MOT_RESULT_COLUMNS = 10
#: Value written for the unused world-coordinate columns.
MOT_UNUSED = -1
#: Columns of a ground-truth row (MOT16/17): ``consider`` 0 marks a box that is not evaluated.
GT_COLUMNS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "consider", "class", "visibility")
#: Column indices.
COL_FRAME, COL_ID, COL_LEFT, COL_TOP, COL_WIDTH, COL_HEIGHT, COL_CONF = range(7)


class MOTFormatError(DataError):
    """A MOTChallenge text file has a malformed line (the message names file and line)."""


def parse_mot_line(text: str, path: str | os.PathLike, lineno: int) -> list[float]:
    """The numbers of one MOTChallenge line (comma, tab or space separated).

    Raises:
        MOTFormatError: fewer than six values, a non-numeric or non-finite
            value; the message starts with ``path:lineno:``.
    """
    fields = [f for f in text.replace("\t", ",").replace(" ", ",").split(",") if f != ""]
    if len(fields) < MOT_MIN_COLUMNS:
        raise MOTFormatError(
            f"{os.fspath(path)}:{lineno}: expected at least {MOT_MIN_COLUMNS} comma-separated values "
            f"(frame, id, left, top, width, height, ...), got {len(fields)}: {text!r}"
        )
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise MOTFormatError(f"{os.fspath(path)}:{lineno}: non-numeric value in {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise MOTFormatError(f"{os.fspath(path)}:{lineno}: non-finite value in {text!r}")
    return values


def iter_mot_rows(path: str | os.PathLike):
    """Yield ``(lineno, values)`` for every data line of a MOTChallenge file (blank and ``#`` lines skipped).

    Raises:
        FileNotFoundError: no such file.
        MOTFormatError: a malformed line (see :func:`parse_mot_line`).
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield lineno, parse_mot_line(text, path, lineno)


def format_gt_rows(frame: int, ids, boxes_tlwh, consider, classes, visibility) -> list[str]:
    """``gt.txt`` lines of one frame (boxes already in MOTChallenge ``left, top, width, height``)."""
    return [
        f"{frame},{int(i)},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},{int(c)},{int(k)},{v:.6f}"
        for i, b, c, k, v in zip(ids, boxes_tlwh, consider, classes, visibility, strict=True)
    ]


def load_mot_txt(path: str | os.PathLike) -> np.ndarray:
    """Read a MOTChallenge gt or result text file.

    Blank and ``#`` lines are skipped. All rows must have the same number of
    columns; frames are integers >= 1, ids integers, box sizes non-negative.

    Args:
        path: The ``.txt`` file.

    Returns:
        float64 array of shape (N, C), C >= 6 the file's column count, rows
        in file order; an empty file gives shape (0, 10).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        MOTFormatError: (a ``ValueError``) on a malformed line, naming the
            file and the 1-based line number.
    """
    path = os.fspath(path)
    rows: list[list[float]] = []
    for lineno, values in iter_mot_rows(path):
        where = f"{path}:{lineno}"
        frame, track_id = values[COL_FRAME], values[COL_ID]
        width, height = values[COL_WIDTH], values[COL_HEIGHT]
        if not frame.is_integer() or frame < 1:
            raise MOTFormatError(f"{where}: frame must be an integer >= 1, got {frame:g}")
        if not track_id.is_integer():
            raise MOTFormatError(f"{where}: id must be an integer, got {track_id:g}")
        if width < 0 or height < 0:
            raise MOTFormatError(f"{where}: negative box size {width:g} x {height:g}")
        if rows and len(values) != len(rows[0]):
            raise MOTFormatError(f"{where}: {len(values)} columns, but earlier lines have {len(rows[0])}")
        rows.append(values)
    if not rows:
        return np.zeros((0, MOT_RESULT_COLUMNS), np.float64)
    return np.asarray(rows, np.float64)


def write_mot_txt(path: str | os.PathLike, rows: np.ndarray | Sequence[Sequence[float]]) -> None:
    """Write MOTChallenge result rows to ``path`` atomically.

    Each row is written as ``frame,id,left,top,width,height,conf,-1,-1,-1``
    (frame and id as integers, box with 3 decimals, conf with 5); rows with
    only six columns get ``conf = 1``. Rows are sorted by frame, then id.

    Args:
        path: Output file; its folder is created when missing.
        rows: (N, >=6) array of ``frame, id, left, top, width, height[, conf]``.

    Raises:
        ValueError: If ``rows`` is not 2-D with at least 6 columns, or holds a
            frame < 1 or a non-integer frame or id.
    """
    array = np.asarray(rows, np.float64)
    if array.size == 0:
        array = array.reshape(0, MOT_RESULT_COLUMNS)
    if array.ndim != 2 or array.shape[1] < MOT_MIN_COLUMNS:
        raise ValueError(f"MOT rows must have shape (N, >={MOT_MIN_COLUMNS}), got {array.shape}")
    frames, ids = array[:, COL_FRAME], array[:, COL_ID]
    if np.any(frames < 1) or np.any(frames != np.round(frames)) or np.any(ids != np.round(ids)):
        raise ValueError(f"MOT rows need integer frames >= 1 and integer ids, got frames {np.unique(frames)}")
    conf = array[:, COL_CONF] if array.shape[1] > COL_CONF else np.ones(len(array))
    order = np.lexsort((ids, frames))
    with atomic_open(path, "w", encoding="utf-8") as f:
        for i in order:
            frame, track_id, left, top, width, height = array[i, :MOT_MIN_COLUMNS]
            f.write(
                f"{int(frame)},{int(track_id)},{left:.3f},{top:.3f},{width:.3f},{height:.3f},"
                f"{conf[i]:.5f},{MOT_UNUSED},{MOT_UNUSED},{MOT_UNUSED}\n"
            )
