"""Scene generator: determinism, box geometry, identities, labels, knobs."""

from __future__ import annotations

import numpy as np
import pytest

from mtmnv3.data import (
    DOMAINS,
    AppearanceSource,
    SceneConfig,
    find_fashion_mnist,
    generate_sequence,
    load_fashion_mnist,
    resolve_appearance,
)
from mtmnv3.data.synth import make_background

HAS_FMNIST = find_fashion_mnist("train") is not None and find_fashion_mnist("test") is not None
TINY = dict(num_sequences=1, num_frames=40, image_size=64, num_objects=3, object_scale=(0.3, 0.5))
#: Fast objects so entering/leaving happens within a tiny sequence.
BUSY = dict(
    num_sequences=1, num_frames=80, image_size=64, num_objects=3, speed=(0.05, 0.08), respawn_delay=(0, 3)
)


def frames(seed=0, seq=0, **knobs):
    return list(generate_sequence(SceneConfig(**{**TINY, **knobs}), seq, seed))


def test_deterministic_from_seed():
    a, b = frames(seed=3), frames(seed=3)
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.image, fb.image)
        np.testing.assert_array_equal(fa.boxes, fb.boxes)
        np.testing.assert_array_equal(fa.instance_ids, fb.instance_ids)
        assert fa.cls_label == fb.cls_label
    c = frames(seed=4)
    assert not all(np.array_equal(fa.image, fc.image) for fa, fc in zip(a, c, strict=True))


def test_start_offset_records_a_later_window_of_the_same_scene():
    long = frames(seed=2, num_frames=40)
    assert long[0].meta["start_frame"] == 0
    starts = set()
    for seq in range(6):
        full = frames(seed=2, seq=seq, num_frames=40)
        short = frames(seed=2, seq=seq, num_frames=4, start_offset=30)
        start = short[0].meta["start_frame"]
        assert 0 <= start <= 30
        starts.add(start)
        assert [f.frame_id for f in short] == [1, 2, 3, 4]
        for fs, fl in zip(short, full[start : start + 4], strict=True):
            np.testing.assert_array_equal(fs.image, fl.image)
            np.testing.assert_array_equal(fs.boxes, fl.boxes)
            np.testing.assert_array_equal(fs.instance_ids, fl.instance_ids)
            assert fs.cls_label == fl.cls_label
    assert len(starts) > 1  # drawn per sequence


def test_deterministic_with_degradations():
    knobs = dict(noise_std=10.0, motion_blur=5, downscale=2.0, lighting_jitter=0.5)
    a, b = frames(seed=1, **knobs), frames(seed=1, **knobs)
    assert all(np.array_equal(fa.image, fb.image) for fa, fb in zip(a, b, strict=True))


@pytest.mark.parametrize("knobs", [TINY, BUSY])
def test_boxes_inside_image_and_tight_on_rendered_objects(knobs):
    cfg = SceneConfig(**knobs)
    for fr in generate_sequence(cfg, 0, 0):
        h, w = fr.image.shape[:2]
        assert fr.image.dtype == np.uint8 and fr.image.shape == (cfg.height, cfg.width, 3)
        b = fr.boxes
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        for box, ident, vis, vpx in zip(b, fr.instance_ids, fr.visibility, fr.visible_px, strict=True):
            ys, xs = np.nonzero(fr.id_map == ident)
            assert len(ys) == vpx
            if vpx:  # every visible pixel of the object is inside its box
                assert xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]
            if vis == 1.0:  # unoccluded and untruncated: the box is exactly its pixels' extent
                np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert set(np.unique(fr.id_map)) - {0} <= set(fr.instance_ids.tolist())


def test_identities_persist_enter_and_leave():
    cfg = SceneConfig(**BUSY)
    seen: dict[int, list[int]] = {}
    labels: dict[int, set[int]] = {}
    for fr in generate_sequence(cfg, 0, 5):
        assert len(set(fr.instance_ids.tolist())) == len(fr.instance_ids)
        for ident, lab in zip(fr.instance_ids.tolist(), fr.labels.tolist(), strict=True):
            seen.setdefault(ident, []).append(fr.frame_id)
            labels.setdefault(ident, set()).add(lab)
    for ident, fids in seen.items():
        assert fids == list(range(fids[0], fids[-1] + 1)), f"id {ident} disappeared and came back"
        assert len(labels[ident]) == 1, f"id {ident} changed class"
    assert max(seen) > cfg.num_objects, "no object entered after the start"
    assert any(f[-1] < cfg.num_frames for f in seen.values()), "no object left"
    assert any(f[0] > 1 for f in seen.values()), "no object entered"


def test_occlusion_and_scale_change_happen():
    fs = frames(num_frames=80, num_objects=4, seed=2)
    inside = [
        (v, fr)
        for fr in fs
        for box, v in zip(fr.boxes, fr.visibility, strict=True)
        if box[0] > 0 and box[1] > 0 and box[2] < 64 and box[3] < 64
    ]
    assert any(v < 0.9 for v, _ in inside), "no occlusion of an in-frame object"
    widths: dict[int, list[float]] = {}
    for fr in frames(num_frames=80, num_objects=1, scale_change=0.5, speed=(0.0, 0.001), seed=2):
        for box, ident, v in zip(fr.boxes, fr.instance_ids, fr.visibility, strict=True):
            if v == 1.0:
                widths.setdefault(int(ident), []).append(float(box[2] - box[0]))
    assert any(max(w) - min(w) >= 3 for w in widths.values() if len(w) > 10)


def test_visibility_ignore_and_classification_label_definition():
    cfg = SceneConfig(**BUSY, min_visibility=0.3)
    num_classes = AppearanceSource(cfg.appearance).num_classes
    lonely = cfg.replace(num_objects=1, respawn_delay=(20, 30))
    saw_no_object = False
    for fr in [*generate_sequence(cfg, 0, 1), *generate_sequence(lonely, 0, 1)]:
        np.testing.assert_array_equal(fr.ignore, fr.visibility < 0.3)
        assert np.all((fr.visibility >= 0) & (fr.visibility <= 1))
        if len(fr.visible_px) and fr.visible_px.max() >= cfg.cls_min_visible_px:
            best = np.flatnonzero(fr.visible_px == fr.visible_px.max())[0]
            assert fr.cls_label == fr.labels[best]
        else:
            assert fr.cls_label == num_classes
            saw_no_object = True
    assert saw_no_object, "expected no-object frames while the single slot waits"


def test_main_subject_is_largest_and_in_front():
    knobs = dict(
        num_frames=30,
        image_size=96,
        num_objects=4,
        object_scale=(0.15, 0.25),
        scale_change=0.0,
        speed=(0.0, 0.005),
    )
    main = frames(**knobs, main_object_scale=(0.5, 0.6))
    for fr in main:
        # slot 0 spawns first: identity 1 is the main subject; it is drawn nearest and is the label
        k = int(np.flatnonzero(fr.instance_ids == 1)[0])
        assert fr.visibility[k] == pytest.approx(1.0)
        assert fr.cls_label == fr.labels[k]

    def tie_rate(seq):
        return np.mean([len(v) > 1 and v[1] > 0.8 * v[0] for v in (np.sort(f.visible_px)[::-1] for f in seq)])

    assert tie_rate(main) == 0.0


def test_degradations_keep_annotations():
    base = frames(seed=7)
    shifted = frames(
        seed=7,
        brightness=0.3,
        gamma=0.8,
        color_cast=(1.2, 1.0, 0.8),
        motion_blur=5,
        downscale=3.0,
        noise_std=12.0,
        domains=("checker",),
    )
    for a, b in zip(base, shifted, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
        assert a.cls_label == b.cls_label
    assert np.mean([f.image.mean() for f in shifted]) > np.mean([f.image.mean() for f in base])
    assert shifted[0].meta["domain"] == "checker"


def test_lighting_knobs_change_pixels_in_the_documented_direction():
    dark = frames(seed=0, gamma=2.0)[0].image.mean()
    plain = frames(seed=0)[0].image.mean()
    bright = frames(seed=0, brightness=0.2)[0].image.mean()
    assert dark < plain < bright
    red = frames(seed=0, color_cast=(1.3, 1.0, 0.7))[0].image
    assert red[..., 0].mean() > red[..., 2].mean() + 10


@pytest.mark.parametrize("domain", DOMAINS)
def test_backgrounds(domain):
    rng = np.random.default_rng(0)
    bg = make_background(domain, 40, 50, rng)
    assert bg.shape == (40, 50, 3) and bg.dtype == np.uint8 and bg.std() > 2


def test_sequences_cycle_domains():
    cfg = SceneConfig(**{**TINY, "num_frames": 1})
    assert [next(generate_sequence(cfg, i, 0)).meta["domain"] for i in range(len(DOMAINS))] == list(DOMAINS)


@pytest.mark.skipif(not HAS_FMNIST, reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_appearance_reads_the_real_files():
    assert resolve_appearance("auto") == "fashion_mnist"
    images, labels = load_fashion_mnist(*find_fashion_mnist("train"))
    assert images.shape == (60000, 28, 28) and labels.max() == 9
    src = AppearanceSource("auto", "train")
    grey, mask, tag = src.sample(3, np.random.default_rng(0))
    idx = int(tag.split(":")[1])
    np.testing.assert_array_equal(grey, images[idx])
    assert labels[idx] == 3 and mask.any()
    # Held-out pools use the test file, disjoint halves.
    rng = np.random.default_rng(0)
    val = {AppearanceSource("fashion_mnist", "val").sample(c, rng)[2] for c in range(10) for _ in range(5)}
    test = {AppearanceSource("fashion_mnist", "test").sample(c, rng)[2] for c in range(10) for _ in range(5)}
    assert max(int(t.split(":")[1]) for t in val) < 5000 <= min(int(t.split(":")[1]) for t in test)
    assert frames(num_frames=1)[0].meta["appearance"] == "fashion_mnist"


def test_procedural_sprites_path():
    src = AppearanceSource("sprites")
    for c in range(src.num_classes):
        grey, mask, _ = src.sample(c, np.random.default_rng(c))
        assert mask.sum() > 100 and grey[mask].min() > 0
    fs = frames(appearance="sprites", num_frames=5)
    assert fs[0].meta["appearance"] == "sprites" and any(len(f.boxes) for f in fs)


@pytest.mark.parametrize(
    "knobs, match",
    [
        (dict(num_frames=0), "num_frames must be >= 1, got 0"),
        (dict(num_objects=2.5), "num_objects must be an int, got 2.5"),
        (dict(image_size=8), "image_size must be at least 16"),
        (dict(domains=("lava",)), "domains must be a non-empty subset"),
        (dict(appearance="photos"), "appearance must be one of"),
        (dict(object_scale=(0.5, 0.2)), "object_scale must satisfy"),
        (dict(main_object_scale=(0.7, 0.5)), "main_object_scale must satisfy"),
        (dict(gamma=0), "gamma must be > 0, got 0"),
        (dict(downscale=0.5), "downscale must be >= 1, got 0.5"),
        (dict(brightness=2), "brightness must be in"),
        (dict(start_offset=-1), "start_offset must be >= 0, got -1"),
    ],
)
def test_scene_config_validation(knobs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SceneConfig(**knobs)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        next(generate_sequence(SceneConfig(**TINY), 0, -1))
