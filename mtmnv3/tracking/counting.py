"""Counting tracks: line crossings per direction and zone occupancy / entries.

A track is represented by one anchor point of its box (the centre by
default, or the bottom centre, where a walking object touches the ground).

- :class:`LineCounter` counts a track each time its anchor moves from one
  side of a directed segment ``a -> b`` to the other while its projection
  falls inside the segment: ``in`` when it crosses from the left of ``a -> b``
  to the right (image coordinates, y down), ``out`` the other way. A track
  that jitters back over the line counts again in the other direction, as
  a turnstile would; a track whose anchor lands exactly on the line keeps
  its previous side until it leaves it. For a horizontal line drawn left to
  right, ``in`` counts objects moving down the screen; drawn right to left,
  moving up.
- :class:`ZoneCounter` counts the tracks whose anchor is inside a polygon
  on each frame, and how many entered (an anchor that moves from outside
  to inside; a track born inside is inside but has not entered).

Both keep per-track state by id, so they follow the tracker's ids; a track
missing from some frames keeps its last side or inside flag until it comes
back. Both have a ``margin`` (pixels, default 2): an anchor closer than that
to the line or the zone's edge keeps its previous side, so an object that
hovers on a boundary (its box jittering by a pixel) is not counted again and
again. :func:`parse_line` and :func:`parse_zone` read the command-line form
(``x1,y1,x2,y2`` and ``x1,y1,x2,y2,x3,y3,...``) and :func:`check_in_frame`
refuses geometry outside a frame before the first frame runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ANCHORS",
    "LineCounter",
    "ZoneCounter",
    "CountingError",
    "anchor_points",
    "parse_line",
    "parse_zone",
    "check_in_frame",
    "points_in_polygon",
    "distance_to_edges",
]

#: Where on a box the counted point sits.
ANCHORS = ("center", "bottom")


class CountingError(ValueError):
    """A line or zone that cannot count: too few points, zero length, outside the frame."""


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise CountingError(f"{what} {text!r}: expected comma-separated numbers") from None
    return values


def parse_line(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """``'x1,y1,x2,y2'`` -> the segment's two end points (pixels of the source frame)."""
    values = _numbers(text, "--line")
    if len(values) != 4:
        raise CountingError(f"--line {text!r}: expected 4 numbers x1,y1,x2,y2, got {len(values)}")
    a, b = (values[0], values[1]), (values[2], values[3])
    if a == b:
        raise CountingError(f"--line {text!r}: the two end points are the same point")
    return a, b


def parse_zone(text: str) -> list[tuple[float, float]]:
    """``'x1,y1,x2,y2,x3,y3,...'`` -> the polygon's vertices (at least 3, non-degenerate)."""
    values = _numbers(text, "--zone")
    if len(values) % 2 or len(values) < 6:
        raise CountingError(
            f"--zone {text!r}: expected at least 3 points as x1,y1,x2,y2,x3,y3,... (an even count of numbers), "
            f"got {len(values)} numbers"
        )
    points = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    if abs(_area(np.asarray(points))) < 1e-9:
        raise CountingError(f"--zone {text!r}: the points enclose no area")
    return points


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def check_in_frame(points: Iterable[Sequence[float]], width: int, height: int, what: str) -> None:
    """Refuse a line or zone with a point outside a ``width`` x ``height`` frame, naming it and the frame."""
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise CountingError(
                f"{what}: point ({x:g}, {y:g}) is outside the {width}x{height} frame "
                f"(x in [0, {width}], y in [0, {height}])"
            )


def anchor_points(bboxes: np.ndarray, anchor: str = "center") -> np.ndarray:
    """(N, 2) anchor points of (N, 4) ``x1, y1, x2, y2`` boxes."""
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2 if anchor == "center" else b[:, 3]
    return np.stack([cx, cy], axis=1)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: each point inside the polygon (even-odd ray casting; points on an edge count as inside)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0][None], poly[:, 1][None]
    x2, y2 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = np.logical_xor.reduce(straddles & (x < x_cross), axis=1)
    # on an edge: collinear with it and within its bounding box
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    on_edge = (
        (np.abs(cross) < 1e-9)
        & (x >= np.minimum(x1, x2) - 1e-9)
        & (x <= np.maximum(x1, x2) + 1e-9)
        & (y >= np.minimum(y1, y2) - 1e-9)
        & (y <= np.maximum(y1, y2) + 1e-9)
    )
    return inside | on_edge.any(axis=1)


def distance_to_edges(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) distance from each point to the nearest edge of the closed polygon."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)[:, None, :]
    a = np.asarray(polygon, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    ab = (b - a)[None]
    t = np.clip(((pts - a[None]) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab
    return np.sqrt(((pts - closest) ** 2).sum(-1)).min(axis=1) if len(a) else np.full(len(pts), np.inf)


@dataclass
class LineCounter:
    """Crossings of a directed segment ``a -> b``, per direction.

    Attributes:
        a, b: end points in source pixels.
        name: label in drawings, CSV rows and summaries.
        anchor: ``'center'`` or ``'bottom'`` of the box.
        margin: pixels either side of the line where an anchor keeps its previous side.
        count_in: crossings from the left of ``a -> b`` to its right.
        count_out: crossings the other way.
    """

    a: tuple[float, float]
    b: tuple[float, float]
    name: str = "line"
    anchor: str = "center"
    margin: float = 2.0
    count_in: int = 0
    count_out: int = 0
    _side: dict[int, int] = field(default_factory=dict, repr=False)

    def update(self, ids: np.ndarray, bboxes: np.ndarray) -> tuple[list[int], list[int]]:
        """Advance one frame; returns the ids that crossed in and out on it."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pts = anchor_points(bboxes, self.anchor)
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        d = b - a
        rel = pts - a
        length = float(np.hypot(*d))
        dist = (d[0] * rel[:, 1] - d[1] * rel[:, 0]) / length  # > 0: right of a -> b with y pointing down
        t = rel @ d / float(d @ d)
        crossed_in, crossed_out = [], []
        for tid, c, proj in zip(ids.tolist(), dist, t):
            side = 1 if c > self.margin else (-1 if c < -self.margin else 0)
            if side == 0:
                continue  # on the line: keep the previous side
            prev = self._side.get(tid)
            self._side[tid] = side
            if prev is None or prev == side or not 0.0 <= proj <= 1.0:
                continue
            if side > 0:
                self.count_in += 1
                crossed_in.append(tid)
            else:
                self.count_out += 1
                crossed_out.append(tid)
        return crossed_in, crossed_out

    def counts(self) -> dict[str, int]:
        return {"in": self.count_in, "out": self.count_out}


@dataclass
class ZoneCounter:
    """Tracks inside a polygon now, and entries (outside -> inside) so far.

    Attributes:
        polygon: vertices in source pixels.
        name: label in drawings, CSV rows and summaries.
        anchor: ``'center'`` or ``'bottom'`` of the box.
        margin: pixels either side of the edge where an anchor keeps its previous inside flag
            (a track first seen there takes the polygon's answer).
        inside: tracks inside on the latest frame.
        entered: outside -> inside transitions so far.
    """

    polygon: list[tuple[float, float]]
    name: str = "zone"
    anchor: str = "center"
    margin: float = 2.0
    inside: int = 0
    entered: int = 0
    _inside: dict[int, bool] = field(default_factory=dict, repr=False)

    def update(self, ids: np.ndarray, bboxes: np.ndarray) -> list[int]:
        """Advance one frame; returns the ids that entered on it."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pts = anchor_points(bboxes, self.anchor)
        poly = np.asarray(self.polygon, dtype=np.float64)
        flags = points_in_polygon(pts, poly)
        near = distance_to_edges(pts, poly) <= self.margin
        entered = []
        for tid, flag, close in zip(ids.tolist(), flags.tolist(), near.tolist()):
            prev = self._inside.get(tid)
            if close and prev is not None:
                flag = prev  # on the edge: keeps its previous flag
            self._inside[tid] = flag
            if flag and prev is False:
                self.entered += 1
                entered.append(tid)
        self.inside = sum(self._inside[t] for t in set(ids.tolist()))
        return entered

    def counts(self) -> dict[str, int]:
        return {"inside": self.inside, "entered": self.entered}
