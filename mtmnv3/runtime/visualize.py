"""Overlay drawing for the demo: tracked boxes with ids and classes, the frame's label, FPS and budget use.

Pure OpenCV on RGB uint8 frames, drawn in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["id_color", "draw_tracks", "draw_status", "draw_counters", "COUNT_COLOR"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def id_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour per track id (golden-ratio hues)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _scale(image: np.ndarray) -> float:
    return max(0.35, min(image.shape[:2]) / 640.0)


def _label(
    image: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], scale: float
) -> None:
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    y = max(y, th + base)
    cv2.rectangle(image, (x, y - th - base), (x + tw + 2, y), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    cv2.putText(
        image,
        text,
        (x + 1, y - base),
        _FONT,
        scale,
        (0, 0, 0) if luminance > 140 else (255, 255, 255),
        1,
        cv2.LINE_AA,
    )


def draw_tracks(
    image: np.ndarray,
    bboxes: np.ndarray,
    ids: Sequence[int] | np.ndarray | None,
    labels: Sequence[int] | np.ndarray | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    predicted: bool = False,
) -> np.ndarray:
    """Draw xyxy ``bboxes`` (original frame coordinates) with ``id``, class
    name and score. ``predicted`` draws thin boxes (motion-only frames)."""
    scale = _scale(image)
    thickness = 1 if predicted else max(1, int(round(2 * scale)))
    for i, box in enumerate(np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)):
        tid = int(ids[i]) if ids is not None else -1
        color = id_color(tid) if tid >= 0 else (0, 255, 0)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
        parts = []
        if tid >= 0:
            parts.append(f"#{tid}")
        if labels is not None:
            lab = int(labels[i])
            parts.append(
                class_names[lab] if class_names is not None and 0 <= lab < len(class_names) else str(lab)
            )
        if scores is not None:
            parts.append(f"{float(scores[i]):.2f}")
        if parts:
            _label(image, " ".join(parts), (x1, y1), color, 0.45 * scale)
    return image


def draw_status(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Status lines (frame label, FPS, budget use) in a dark box, top left."""
    scale = 0.5 * _scale(image)
    sizes = [cv2.getTextSize(t, _FONT, scale, 1)[0] for t in lines]
    if not sizes:
        return image
    line_h = max(h for _, h in sizes) + 6
    width = max(w for w, _ in sizes) + 10
    overlay = image[: line_h * len(lines) + 6, :width]
    overlay[:] = (overlay.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(image, text, (5, line_h * (k + 1)), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


#: Colour of counting lines and zones (RGB).
COUNT_COLOR = (255, 200, 0)


def draw_counters(image: np.ndarray, counters: Sequence[Any]) -> np.ndarray:
    """Counting lines (with an arrow showing the ``in`` direction) and zones, each labelled with its counts."""
    scale = _scale(image)
    thickness = max(1, int(round(2 * scale)))
    for c in counters:
        if hasattr(c, "polygon"):
            pts = np.round(np.asarray(c.polygon)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], True, COUNT_COLOR, thickness)
            org = tuple(int(v) for v in pts[:, 0].min(0))
            text = f"{c.name}: {c.inside} inside, {c.entered} entered"
        else:
            a = np.asarray(c.a, dtype=np.float64)
            b = np.asarray(c.b, dtype=np.float64)
            cv2.line(
                image,
                tuple(int(round(v)) for v in a),
                tuple(int(round(v)) for v in b),
                COUNT_COLOR,
                thickness,
            )
            mid, d = (a + b) / 2, b - a
            normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)  # towards the "in" side
            tip = mid + normal * 12 * scale
            cv2.arrowedLine(
                image,
                tuple(int(round(v)) for v in mid),
                tuple(int(round(v)) for v in tip),
                COUNT_COLOR,
                max(1, thickness - 1),
                tipLength=0.4,
            )
            org = tuple(int(round(v)) for v in np.minimum(a, b))
            text = f"{c.name}: in {c.count_in} out {c.count_out}"
        _label(image, text, (max(0, org[0]), max(12, org[1])), COUNT_COLOR, 0.45 * scale)
    return image
