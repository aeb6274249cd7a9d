"""The perception loop's class filter and counters on synthetic scenes with known crossings.

The frames' detections replay the scene's own ground truth (every object that
is not occluded), so the loop's tracker, class filter and counters are the real
ones and the expected counts come from the ground-truth identities.
"""

import numpy as np
import pytest
from _helpers import CONFIG, tiny_options

from mtmnv3.apis import init_model
from mtmnv3.cli.live_demo import parse_cfg_options
from mtmnv3.data.synth import SceneConfig, generate_sequence
from mtmnv3.runtime.budget import ModelLayout
from mtmnv3.runtime.deployed import FramePrediction
from mtmnv3.runtime.loop import PerceptionLoop
from mtmnv3.runtime.video import Frame
from mtmnv3.tracking import build_tracker
from mtmnv3.tracking.counting import LineCounter, ZoneCounter

SIZE = 128


def never_occluded(frames):
    """Identities fully visible on every frame they appear in."""
    seen, occluded = set(), set()
    for f in frames:
        seen |= set(f.instance_ids.tolist())
        occluded |= set(f.instance_ids[f.visibility < 0.999].tolist())
    return seen - occluded


class GroundTruthReplay:
    """A frame runner whose detections are a scene's never-occluded objects' ground-truth boxes
    (embeddings: one-hot ids)."""

    def __init__(self, frames):
        self.frames = {f.frame_id - 1: f for f in frames}
        self.visible = np.array(sorted(never_occluded(frames)))

    def predict(self, image, heads=None, input_size=None):
        f = self.frames[self._index]
        keep = np.isin(f.instance_ids, self.visible)
        emb = np.zeros((int(keep.sum()), 64), np.float32)
        emb[np.arange(len(emb)), f.instance_ids[keep] % 64] = 1.0
        return FramePrediction(
            f.boxes[keep].astype(np.float32),
            np.full(int(keep.sum()), 0.9, np.float32),
            f.labels[keep].astype(np.int64),
            emb,
            None,
        )


@pytest.fixture(scope="module")
def layout():
    opts = parse_cfg_options([o for o in tiny_options("unused") if o.startswith("model.")])
    return ModelLayout.from_model(init_model(CONFIG, None, opts))


def _run(frames, layout, keep_labels, counters):
    runner = GroundTruthReplay(frames)
    tracker = build_tracker(dict(type="EmbeddingTracker", min_hits=1))
    loop = PerceptionLoop(
        runner, tracker, None, layout, SIZE, draw=True, keep_labels=keep_labels, counters=counters
    )
    results = []
    for f in frames:
        runner._index = f.frame_id - 1
        results.append(loop.step(Frame(f.frame_id - 1, f.image, 0.0)))
    return results


def _reference_counts(frames, keep_labels, line, zone):
    """The same counters fed the ground-truth identities of the same (kept, visible) objects."""
    ref_line, ref_zone = LineCounter(*line), ZoneCounter(zone)
    visible = np.array(sorted(never_occluded(frames)))
    for f in frames:
        keep = np.isin(f.instance_ids, visible) & np.isin(f.labels, keep_labels)
        ref_line.update(f.instance_ids[keep], f.boxes[keep])
        ref_zone.update(f.instance_ids[keep], f.boxes[keep])
    return ref_line.counts(), ref_zone.counts()


@pytest.mark.parametrize("seq_index", [0, 1])
def test_counts_are_exact_for_non_occluded_objects(layout, seq_index):
    cfg = SceneConfig(
        num_sequences=2,
        num_frames=60,
        image_size=SIZE,
        num_objects=3,
        appearance="sprites",
        object_scale=(0.12, 0.18),
    )
    frames = list(generate_sequence(cfg, seq_index, seed=5))
    labels = sorted({int(v) for f in frames for v in f.labels})
    keep = labels[: max(1, len(labels) - 1)]  # drop one class: it must be neither tracked nor counted
    line = ((0.0, SIZE / 2), (float(SIZE), SIZE / 2))
    zone = [(0, 0), (SIZE / 2, 0), (SIZE / 2, SIZE), (0, SIZE)]
    results = _run(frames, layout, keep, [LineCounter(*line, name="l"), ZoneCounter(zone, name="z")])
    want_line, want_zone = _reference_counts(frames, keep, line, zone)
    assert results[-1].counts == {"l": want_line, "z": want_zone}
    assert sum(want_line.values()) + want_zone["entered"] > 0  # the scene does cross
    tracked = np.concatenate([r.tracks.labels for r in results])
    assert set(tracked.tolist()) <= set(keep)  # the dropped class was never tracked
    assert results[-1].image.shape == frames[-1].image.shape
