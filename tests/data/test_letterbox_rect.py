"""Letterbox to a rectangle and the aspect-keeping mode: output shapes, padding, exact inverse of boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mtmnv3.heads.center_head import to_original_coords

from mtmnv3.data.transforms import Letterbox, keep_aspect_shape


def _sample(h, w, boxes=((10.0, 20.0, 60.0, 50.0),)):
    return {"img": np.full((h, w, 3), 40, np.uint8), "gt_bboxes": np.asarray(boxes, np.float32)}


@pytest.mark.parametrize(
    ("frame_hw", "long_side", "want_hw"),
    [
        ((1080, 1920), 320, (192, 320)),  # 16:9 -> 320x192 (w x h), not 320x320
        ((180, 320), 320, (192, 320)),
        ((1920, 1080), 320, (320, 192)),  # portrait
        ((100, 200), 128, (64, 128)),  # 2:1 fits exactly
        ((480, 640), 320, (256, 320)),  # 4:3: 240 -> 256
        ((300, 300), 160, (160, 160)),
        ((5, 1000), 64, (32, 64)),  # extreme aspect: one stride at least
    ],
)
def test_keep_aspect_shape_is_the_smallest_stride_multiple(frame_hw, long_side, want_hw):
    assert keep_aspect_shape(frame_hw, long_side) == want_hw
    out = Letterbox(long_side, keep_aspect=True)(_sample(*frame_hw))
    assert out["img"].shape[:2] == want_hw and out["img_shape"] == want_hw
    top, bottom, left, right = out["pad_param"]
    # The short side is padded by less than one stride; the long side by no more than rounding.
    assert top + bottom < 32 and left + right < 32
    assert min(top + bottom, left + right) <= 1


def test_a_rectangle_in_fixed_mode_is_width_height():
    out = Letterbox((160, 96))(_sample(100, 200))
    assert out["img"].shape == (96, 160, 3)
    assert out["pad_param"] == (8, 8, 0, 0)
    assert out["scale_factor"] == (0.8, 0.8)
    assert Letterbox(64).out_hw == (64, 64)


def test_fixed_rectangle_and_keep_aspect_agree_on_a_matching_frame():
    a = Letterbox(320, keep_aspect=True)(_sample(1080, 1920))
    b = Letterbox((320, 192))(_sample(1080, 1920))
    np.testing.assert_array_equal(a["img"], b["img"])
    assert a["pad_param"] == b["pad_param"] and a["scale_factor"] == b["scale_factor"]
    assert Letterbox(320, keep_aspect=True).output_hw((1080, 1920)) == (192, 320)
    assert Letterbox((320, 192)).output_hw((50, 50)) == (192, 320)


@pytest.mark.parametrize(
    ("frame_hw", "transform"),
    [
        ((180, 320), Letterbox(320, keep_aspect=True)),
        ((181, 333), Letterbox(128, keep_aspect=True)),  # scale factors differ by rounding per axis
        ((333, 181), Letterbox(96, keep_aspect=True)),
        ((100, 200), Letterbox((96, 160))),  # a file's rectangle that does not match the aspect
        ((90, 40), Letterbox(64)),
    ],
)
def test_boxes_map_back_to_frame_pixels_exactly(frame_hw, transform):
    h, w = frame_hw
    boxes = np.array([[3.0, 4.0, w * 0.5, h * 0.75], [w * 0.25, h * 0.1, w - 1.0, h - 2.0]], np.float32)
    out = transform(_sample(h, w, boxes))
    meta = dict(ori_shape=(h, w), pad_param=out["pad_param"], scale_factor=out["scale_factor"])
    back = to_original_coords(torch.from_numpy(out["gt_bboxes"]), meta).numpy()
    np.testing.assert_allclose(back, boxes, atol=1e-4)


def test_boxes_past_the_frame_are_clipped_to_it():
    out = Letterbox(64, keep_aspect=True)(_sample(50, 100))
    meta = dict(ori_shape=(50, 100), pad_param=out["pad_param"], scale_factor=out["scale_factor"])
    net = torch.tensor([[-5.0, 0.0, 70.0, 32.0]])  # reaches into the padding and past the right edge
    back = to_original_coords(net, meta).numpy()[0]
    assert back[0] == 0.0 and back[1] == 0.0 and back[2] == 100.0 and back[3] == 50.0


def test_the_image_is_centred_in_grey_padding():
    out = Letterbox(64, keep_aspect=True, pad_val=7)(_sample(20, 64))
    img = out["img"]
    assert img.shape == (32, 64, 3) and out["pad_param"] == (6, 6, 0, 0)
    assert (img[:6] == 7).all() and (img[-6:] == 7).all() and (img[6:26] == 40).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(size=100, keep_aspect=True), "multiple of 32"),
        (dict(size=(320, 192), keep_aspect=True), "multiple of 32"),
        (dict(size=96, keep_aspect=True, stride=0), "stride must be a positive int"),
        (dict(size=(0, 10)), "must be positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Letterbox(**kwargs)


def test_keep_aspect_shape_checks_its_arguments():
    with pytest.raises(ValueError, match="long_side must be a positive multiple of 32"):
        keep_aspect_shape((10, 10), 48)
    with pytest.raises(ValueError, match="positive"):
        keep_aspect_shape((0, 10), 64)
    assert keep_aspect_shape((10, 20), 48, stride=16) == (32, 48)
