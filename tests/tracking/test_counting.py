"""Line and zone counting: parsing and refusals, hand-made paths, and synthetic scenes against their own ground truth."""

import numpy as np
import pytest

from mtmnv3.data.synth import SceneConfig, generate_sequence
from mtmnv3.tracking.counting import (
    CountingError,
    LineCounter,
    ZoneCounter,
    anchor_points,
    check_in_frame,
    parse_line,
    parse_zone,
    points_in_polygon,
)


def _box(cx, cy, half=4.0):
    return np.array([[cx - half, cy - half, cx + half, cy + half]])


@pytest.mark.parametrize(
    "text, match",
    [
        ("1,2,3", "expected 4 numbers"),
        ("1,2,3,4,5", "expected 4 numbers"),
        ("5,5,5,5", "same point"),
        ("a,2,3,4", "comma-separated numbers"),
    ],
)
def test_bad_lines_are_refused(text, match):
    with pytest.raises(CountingError, match=match):
        parse_line(text)


@pytest.mark.parametrize(
    "text, match",
    [("0,0,10,10", "at least 3 points"), ("0,0,10,10,20", "at least 3 points"), ("0,0,5,5,10,10", "no area")],
)
def test_bad_zones_are_refused(text, match):
    with pytest.raises(CountingError, match=match):
        parse_zone(text)


def test_geometry_outside_the_frame_is_refused_naming_point_and_frame():
    check_in_frame(parse_line("0,0,320,180"), 320, 180, "--line")
    with pytest.raises(CountingError, match=r"\(400, 10\) is outside the 320x180 frame"):
        check_in_frame(parse_line("0,10,400,10"), 320, 180, "--line 0,10,400,10")


def test_line_counts_each_direction_once_per_crossing():
    # a horizontal line drawn left to right: "in" is moving down the screen
    line = LineCounter((0.0, 50.0), (100.0, 50.0))
    path_down = [(30, y) for y in range(30, 80, 5)]
    path_up = [(70, y) for y in range(80, 30, -5)]
    for (x1, y1), (x2, y2) in zip(path_down, path_up):
        line.update(np.array([1, 2]), np.concatenate([_box(x1, y1), _box(x2, y2)]))
    assert line.counts() == {"in": 1, "out": 1}
    # back over the line: counted again, the other way
    line.update(np.array([1]), _box(30, 40))
    assert line.counts() == {"in": 1, "out": 2}


def test_line_ignores_passing_beyond_its_ends_and_pauses_on_it():
    line = LineCounter((40.0, 50.0), (60.0, 50.0))
    for y in (40, 50, 50, 60):  # on the line for two frames, then below: one crossing
        line.update(np.array([1]), _box(50, y))
    for y in (40, 60):  # beside the segment: no crossing
        line.update(np.array([2]), _box(90, y))
    assert line.counts() == {"in": 1, "out": 0}


def test_zone_counts_inside_and_entries_not_births():
    zone = ZoneCounter([(0, 0), (50, 0), (50, 50), (0, 50)])
    zone.update(np.array([1, 2]), np.concatenate([_box(25, 25), _box(80, 25)]))  # 1 born inside
    assert zone.counts() == {"inside": 1, "entered": 0}
    zone.update(np.array([1, 2]), np.concatenate([_box(25, 25), _box(40, 25)]))  # 2 enters
    assert zone.counts() == {"inside": 2, "entered": 1}
    zone.update(np.array([2]), _box(80, 25))  # 2 leaves; 1 missing this frame
    zone.update(np.array([2]), _box(45, 25))  # and comes back
    assert zone.counts() == {"inside": 1, "entered": 2}


def test_points_in_polygon_matches_matplotlib():
    from matplotlib.path import Path

    rng = np.random.default_rng(0)
    poly = np.array([(10, 10), (90, 20), (70, 80), (40, 50), (15, 70)], dtype=float)
    pts = rng.uniform(0, 100, (500, 2))
    ours = points_in_polygon(pts, poly)
    ref = Path(poly).contains_points(pts)
    on_edge = ours != ref  # only points exactly on an edge may differ, and random floats never are
    assert not on_edge.any()


def _segment_crossings(p0, p1, a, b):
    """Reference: +1/-1 when the move p0 -> p1 properly intersects segment a-b (sign: side of p1), else 0."""

    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    o1, o2 = orient(a, b, p0), orient(a, b, p1)
    o3, o4 = orient(p0, p1, a), orient(p0, p1, b)
    if o1 != o2 and o1 != 0 and o2 != 0 and o3 != o4:
        return int(o2)
    return 0


def _side(p, a, b):
    return np.sign((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))


@pytest.mark.parametrize("seq_index", [0, 1, 2])
def test_counts_on_synthetic_scenes_match_their_ground_truth(seq_index):
    """Objects move, leave and respawn: the counter on the ground-truth tracks gives the geometric crossings."""
    cfg = SceneConfig(num_sequences=3, num_frames=60, image_size=128, num_objects=4, appearance="sprites")
    size = 128.0
    lines = {"h": ((0.0, size / 2), (size, size / 2)), "v": ((size / 2, size), (size / 2, 0.0))}
    # margin 0: the pure geometry the reference computes (the loop test covers the default margin)
    counters = {k: LineCounter(a, b, name=k, margin=0.0) for k, (a, b) in lines.items()}
    zone = ZoneCounter([(32, 32), (96, 32), (96, 96), (32, 96)], margin=0.0)
    expected = {k: {"in": 0, "out": 0} for k in lines}
    expected_entries, last_inside, last_off = 0, {}, {k: {} for k in lines}
    for frame in generate_sequence(cfg, seq_index, seed=3):
        ids, boxes = frame.instance_ids, frame.boxes.astype(np.float64)
        for c in counters.values():
            c.update(ids, boxes)
        zone.update(ids, boxes)
        pts = anchor_points(boxes)
        inside = points_in_polygon(pts, np.array(zone.polygon))
        for tid, p, flag in zip(ids.tolist(), pts, inside.tolist()):
            for k, (a, b) in lines.items():
                # from the last position off the line (a point on it keeps the side it came from)
                if tid in last_off[k]:
                    s = _segment_crossings(last_off[k][tid], p, a, b)
                    expected[k]["in" if s > 0 else "out"] += s != 0
                if _side(p, a, b) != 0:
                    last_off[k][tid] = p
            if tid in last_inside:
                expected_entries += flag and not last_inside[tid]
            last_inside[tid] = flag
    assert {k: c.counts() for k, c in counters.items()} == expected
    assert zone.entered == expected_entries
    assert sum(v["in"] + v["out"] for v in expected.values()) > 0  # the scenes do cross the lines


def test_margin_stops_boundary_jitter_from_counting_again():
    """An object hovering on a line or zone edge, its box jittering by a pixel, counts once."""
    jitter = [48, 51, 49, 51, 49, 51, 60]  # anchor y: one real crossing at the end
    line, bare = LineCounter((0.0, 50.0), (100.0, 50.0)), LineCounter((0.0, 50.0), (100.0, 50.0), margin=0.0)
    zone = ZoneCounter([(0, 0), (100, 0), (100, 50), (0, 50)])
    for y in [30, *jitter[:-1], 40]:
        for c in (line, bare, zone):
            c.update(np.array([1]), _box(50, y))
    assert line.counts() == {"in": 0, "out": 0} and bare.counts()["in"] == 3
    assert zone.counts() == {"inside": 1, "entered": 0}
    line.update(np.array([1]), _box(50, 60))
    assert line.counts() == {"in": 1, "out": 0}


def test_distance_to_edges():
    from mtmnv3.tracking.counting import distance_to_edges

    square = np.array([(0, 0), (10, 0), (10, 10), (0, 10)], dtype=float)
    d = distance_to_edges(np.array([(5, 5), (5, 0), (13, 14), (-3, 5)]), square)
    np.testing.assert_allclose(d, [5, 0, 5, 3])
