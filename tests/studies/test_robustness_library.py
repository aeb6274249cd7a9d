"""Robustness study library: corruptions, the pipeline transform, attacks, group DRO, AugMix."""

import copy
import math
import time

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from mtmnv3.core.registry import TRANSFORMS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data import PackMultiTaskInputs, SynthMultiTaskDataset
from mtmnv3.data.corrupt_transforms import CorruptFrames, still_image_video_id
from mtmnv3.data.corruptions import (
    CORRUPTIONS,
    PER_FRAME_NOISE,
    PER_VIDEO_RANDOM,
    SEVERITY_TABLES,
    corrupt,
)
from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.models.dro import (
    AUGMIX_EXTRA_OPS,
    AUGMIX_OPS,
    GroupDROWeights,
    augmentation_op,
    augmix,
    group_mean_losses,
    jensen_shannon_consistency,
)
from mtmnv3.studies.robustness.attacks import (
    attack_loss,
    fgsm_attack,
    pgd_attack,
    pixels_to_unit,
    trunk_feature_distance,
    unit_to_pixels,
)

NAMES = sorted(CORRUPTIONS)
SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 64


def scenes(n: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Natural-looking uint8 frames: smooth shading, textured rectangles, mid-range values."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    imgs = []
    for _ in range(n):
        phase = torch.rand(3, generator=g) * 2 * math.pi
        base = 128 + 40 * torch.sin(4 * xx[None] + 3 * yy[None] + phase[:, None, None])
        for _ in range(4):
            x0, y0 = (torch.rand(2, generator=g) * size * 0.7).long().tolist()
            w, h = (torch.rand(2, generator=g) * size * 0.3 + 4).long().tolist()
            colour = torch.rand(3, 1, 1, generator=g) * 140 + 50
            base[:, y0 : y0 + h, x0 : x0 + w] = colour
        base += torch.randn(base.shape, generator=g) * 6
        imgs.append(base.clamp(0, 255).round().to(torch.uint8))
    return torch.stack(imgs)


def impulse(size: int = 33) -> torch.Tensor:
    img = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    img[..., size // 2, size // 2] = 255
    return img


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


# ---- corruptions -------------------------------------------------------------------------------
def test_every_family_has_five_severities():
    assert set(CORRUPTIONS) == set(SEVERITY_TABLES)
    assert len(CORRUPTIONS) == 11
    assert all(len(t) == 5 for t in SEVERITY_TABLES.values())


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_numpy_layout(name):
    x = scenes(3)
    for s in SEVERITIES:
        y = corrupt(x, name, s, seed=1)
        assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
        assert 0 <= int(y.min()) and int(y.max()) <= 255
    y = CORRUPTIONS[name](x, 3, seed=1)
    hwc = x.permute(0, 2, 3, 1).numpy()
    y_np = corrupt(hwc, name, 3, seed=1)
    assert isinstance(y_np, np.ndarray) and y_np.shape == hwc.shape and y_np.dtype == np.uint8
    np.testing.assert_array_equal(y_np, y.permute(0, 2, 3, 1).numpy())
    single = corrupt(hwc[1], name, 3, seed=1, video_ids=[1], frame_ids=[1])
    assert single.shape == hwc[1].shape
    np.testing.assert_array_equal(single, y_np[1])


@pytest.mark.parametrize("name", NAMES)
def test_severity_is_monotone(name):
    x = scenes(4)
    vids = [7, 7, 7, 7]  # one video: the same random parameters at every severity
    diffs = [mean_abs_diff(corrupt(x, name, s, seed=0, video_ids=vids), x) for s in SEVERITIES]
    assert diffs[0] > 0
    assert all(b > a for a, b in zip(diffs, diffs[1:])), diffs


def test_severity_statistics_move_the_documented_way():
    x = scenes(4).float()
    mean = [corrupt(x.byte(), "brightness", s).float().mean() for s in SEVERITIES]
    assert all(b > a > x.mean() for a, b in zip(mean, mean[1:]))
    mean = [corrupt(x.byte(), "darkness", s).float().mean() for s in SEVERITIES]
    assert all(b < a < x.mean() for a, b in zip(mean, mean[1:]))
    std = [corrupt(x.byte(), "contrast", s).float().std() for s in SEVERITIES]
    assert all(b < a < x.std() for a, b in zip(std, std[1:]))

    def sharpness(img: torch.Tensor) -> float:  # mean absolute horizontal gradient
        return img.float().diff(dim=-1).abs().mean().item()

    for name in ("defocus_blur", "motion_blur", "low_resolution"):
        sharp = [sharpness(corrupt(x.byte(), name, s)) for s in SEVERITIES]
        assert all(b < a < sharpness(x) for a, b in zip(sharp, sharp[1:])), (name, sharp)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_from_seed(name):
    x = scenes(3)
    a = corrupt(x, name, 4, seed=11, video_ids=[0, 1, 1], frame_ids=[1, 1, 2])
    b = corrupt(x, name, 4, seed=11, video_ids=[0, 1, 1], frame_ids=[1, 1, 2])
    assert torch.equal(a, b)
    if name in PER_FRAME_NOISE or name in PER_VIDEO_RANDOM:
        outs = {
            corrupt(x, name, 4, seed=s, video_ids=[0, 1, 1], frame_ids=[1, 1, 2]).numpy().tobytes()
            for s in range(6)
        }
        assert len(outs) > 1, "the seed must matter"


@pytest.mark.parametrize("name", NAMES)
def test_same_parameters_across_the_frames_of_a_video(name):
    frame = scenes(1)
    two = frame.expand(2, -1, -1, -1).contiguous()
    out = corrupt(two, name, 4, seed=3, video_ids=[5, 5], frame_ids=[0, 5])
    if name in PER_FRAME_NOISE:
        assert not torch.equal(out[0], out[1]), "noise is drawn per frame"
    else:
        assert torch.equal(out[0], out[1]), "the same frame content gives the same result in one video"
    # A frame's result does not depend on the batch it is corrupted in.
    alone = corrupt(frame, name, 4, seed=3, video_ids=[5], frame_ids=[5])
    assert torch.equal(alone[0], out[1])
    if name in PER_VIDEO_RANDOM:
        per_video = {
            corrupt(frame, name, 4, seed=3, video_ids=[v], frame_ids=[0]).numpy().tobytes() for v in range(8)
        }
        assert len(per_video) > 1, "parameters are drawn per video"


def cast_direction(out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    gain = torch.log(out.float().mean(dim=(2, 3)) / clean.float().mean(dim=(2, 3)))
    gain = gain - gain.mean(dim=1, keepdim=True)
    return gain / gain.norm(dim=1, keepdim=True)


def test_color_cast_direction_is_per_video():
    x = scenes(3, seed=4)  # three different frames
    out = corrupt(x, "color_cast", 3, seed=0, video_ids=[3, 3, 4], frame_ids=[0, 5, 0])
    d = cast_direction(out, x)
    assert torch.dot(d[0], d[1]) > 0.99, "frames 0 and 5 of one video get the same cast"
    assert torch.dot(d[0], d[2]) < 0.9, "another video gets another cast"


def test_motion_blur_angle_is_per_video():
    dot = impulse().expand(3, -1, -1, -1).contiguous()
    psf = corrupt(dot, "motion_blur", 5, seed=0, video_ids=[3, 3, 4], frame_ids=[0, 5, 0]).float()[:, 0]
    assert torch.equal(psf[0], psf[1])
    assert not torch.allclose(psf[0], psf[2])
    # the streak is a line: its support is long in one direction only
    ys, xs = torch.nonzero(psf[0] > 0, as_tuple=True)
    extent = max(int(ys.max() - ys.min()), int(xs.max() - xs.min())) + 1
    assert SEVERITY_TABLES["motion_blur"][4] <= extent + 1


def test_all_corruptions_speed_on_32_frames_at_192px():
    x = scenes(32, size=192)
    torch.manual_seed(0)
    start = time.perf_counter()
    for name in NAMES:
        for s in SEVERITIES:
            corrupt(x, name, s, seed=0, video_ids=torch.arange(32) // 8, frame_ids=torch.arange(32) % 8)
    elapsed = time.perf_counter() - start
    print(f"\n11 corruptions x 5 severities on 32 x 3 x 192 x 192 uint8: {elapsed:.2f} s")


@pytest.mark.parametrize("radius", SEVERITY_TABLES["defocus_blur"])
def test_defocus_blur_opencv_path_matches_the_depthwise_conv(radius):
    """On the CPU the disk blur runs through cv2.filter2D; the conv2d path is the reference."""
    from mtmnv3.data.corruptions import _disk_kernel, _filter2d, _filter2d_opencv

    x = scenes(8, size=96).float()
    kernel = _disk_kernel(radius)
    pad = kernel.shape[-1] // 2
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    reference = torch.nn.functional.conv2d(padded, kernel.expand(3, 1, *kernel.shape), groups=3)
    fast = _filter2d_opencv(x, kernel)
    assert fast.shape == x.shape and fast.dtype == torch.float32
    assert torch.equal(_filter2d(x, kernel), fast)  # the CPU path is the OpenCV one
    assert (fast - reference).abs().max() < 1e-3
    differ = (fast.round() != reference.round()).float().mean()
    assert differ < 1e-3  # kernels from 11x11 filter through the DFT: a rare one-level rounding change


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (
            dict(name="fog", severity=1),
            ValueError,
            r"unknown corruption 'fog'; known corruptions: \['brightness'",
        ),
        (dict(name="brightness", severity=0), ValueError, "severity must be an int in 1..5, got 0"),
        (dict(name="brightness", severity=6), ValueError, "severity must be an int in 1..5, got 6"),
        (dict(name="brightness", severity=2.5), ValueError, "severity must be an int in 1..5, got 2.5"),
        (dict(name="brightness", severity=1, seed=-1), ValueError, "seed must be a non-negative int, got -1"),
        (dict(name="brightness", severity=1, video_ids=[1]), ValueError, "video_ids must be 2 integers"),
        (
            dict(name="brightness", severity=1, frame_ids=[0.5, 1.5]),
            ValueError,
            "frame_ids must be 2 integers",
        ),
    ],
)
def test_bad_arguments_raise(kwargs, err, match):
    with pytest.raises(err, match=match):
        corrupt(scenes(2), **kwargs)


def test_bad_images_raise():
    with pytest.raises(ValueError, match=r"tensor images must be uint8 \(N, 3, H, W\), got torch.float32"):
        corrupt(scenes(1).float(), "contrast", 1)
    with pytest.raises(ValueError, match=r"got torch.uint8 \(3, 64, 64\)"):
        corrupt(scenes(1)[0], "contrast", 1)
    with pytest.raises(ValueError, match=r"numpy images must be uint8 \(H, W, 3\)"):
        corrupt(np.zeros((8, 8, 4), np.uint8), "contrast", 1)
    with pytest.raises(TypeError, match="got list"):
        corrupt([[0]], "contrast", 1)


# ---- pipeline transform --------------------------------------------------------------------------
def test_corrupt_frames_transform_matches_corrupt():
    t = TRANSFORMS.build(dict(type="CorruptFrames", name="gaussian_noise", severity=2, seed=9))
    assert isinstance(t, CorruptFrames) and "gaussian_noise" in repr(t)
    img = scenes(1)[0].permute(1, 2, 0).numpy().copy()
    out = t(dict(img=img.copy(), video_id=4, frame_id=7, img_id=99))
    expected = corrupt(img, "gaussian_noise", 2, seed=9, video_ids=[4], frame_ids=[7])
    np.testing.assert_array_equal(out["img"], expected)
    assert out["corruption"] == ("gaussian_noise", 2)
    # still images (video_id -1) get their own stream per image
    still = t(dict(img=img.copy(), video_id=-1, frame_id=-1, img_id=3))
    np.testing.assert_array_equal(
        still["img"],
        corrupt(img, "gaussian_noise", 2, seed=9, video_ids=[still_image_video_id(3)], frame_ids=[0]),
    )
    with pytest.raises(ValueError, match="unknown corruption"):
        CorruptFrames("snow", 1)
    with pytest.raises(ValueError, match="severity must be an int in 1..5, got 9"):
        CorruptFrames("contrast", 9)


def test_corrupt_frames_in_a_dataset_pipeline(tmp_path):
    pipeline = [
        dict(type="CorruptFrames", name="color_cast", severity=5, seed=0),
        dict(type="PackMultiTaskInputs"),
    ]
    kwargs = dict(data_root=str(tmp_path), split="test", num_sequences=2, num_frames=3, image_size=64)
    clean = SynthMultiTaskDataset(**kwargs, pipeline=[PackMultiTaskInputs()])
    shifted = SynthMultiTaskDataset(**kwargs, pipeline=pipeline)
    items = [(clean[i], shifted[i]) for i in range(len(clean))]
    dirs = {}
    for c, s in items:
        meta = s["data_samples"].metainfo
        assert s["inputs"].shape == c["inputs"].shape and s["inputs"].dtype == torch.uint8
        d = cast_direction(s["inputs"][None], c["inputs"][None])[0]
        dirs.setdefault(meta["video_id"], []).append(d)
    assert len(dirs) == 2
    for ds in dirs.values():
        assert all(torch.dot(ds[0], d) > 0.98 for d in ds), "one cast per video"
    a, b = (v[0] for v in dirs.values())
    assert torch.dot(a, b) < 0.95


# ---- attacks -------------------------------------------------------------------------------------
ATTACK_SIZE = 64
BOXES = [[6.0, 8.0, 30.0, 36.0], [34.0, 20.0, 60.0, 56.0]]


def tiny_model() -> MultiTaskPerceptor:
    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.5),
        heads=dict(
            cls=dict(
                type="ClsHead", num_classes=11, hidden_channels=32, object_loss_weight=1.0
            ),  # as the default
            det=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
            emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
    )
    # An untrained trunk's eval-mode activations vanish with depth (running statistics at their
    # initial values); calibrate batch-norm statistics on a few frames as a trained model would have.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        calib = model.data_preprocessor(dict(inputs=scenes(8, size=ATTACK_SIZE, seed=9)), False)["inputs"]
        model.head_outputs(calib, list(model.heads))
    return model


def samples(n: int = 2) -> list[MultiTaskDataSample]:
    out = []
    for i in range(n):
        s = MultiTaskDataSample(
            metainfo=dict(
                tasks=("cls", "det", "track"),
                img_shape=(ATTACK_SIZE, ATTACK_SIZE),
                ori_shape=(ATTACK_SIZE, ATTACK_SIZE),
                scale_factor=(1.0, 1.0),
            )
        )
        gi = InstanceData()
        gi.bboxes = torch.tensor(BOXES)
        gi.labels = torch.tensor([1, 3])
        gi.instance_ids = torch.tensor([2 + i, 5])
        gi.ignore = torch.tensor([False, False])
        gi.visibility = torch.ones(2)
        s.gt_instances = gi
        s.gt_label = torch.tensor(3 + i)
        out.append(s)
    return out


@pytest.fixture(scope="module")
def attack_setup():
    model = tiny_model()
    model.train()  # the attack must switch to eval and restore this
    x = pixels_to_unit(scenes(2, size=ATTACK_SIZE, seed=5))
    return model, x, samples(2)


# A randomly initialised trunk is far from smooth: its first-order regime ends below one grey
# level, so the loss-increase checks use small radii (a trained model tolerates the usual 4/255).
PGD_TEST_EPS = 1 / 255
FGSM_TEST_EPS = 0.1 / 255


@pytest.mark.parametrize("target", ["cls", "det", "emb"])
def test_pgd_raises_the_head_loss_within_eps(attack_setup, target):
    model, x, ds = attack_setup
    adv = pgd_attack(model, x, ds, target=target, eps=PGD_TEST_EPS, steps=10, seed=0)
    assert model.training, "the model's mode is restored"
    assert all(p.grad is None for p in model.parameters()), "no parameter gradients"
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv - x).abs().max() <= PGD_TEST_EPS + 1e-6
    model.eval()
    with torch.no_grad():
        clean_loss = attack_loss(model, x, ds, target)
        adv_loss = attack_loss(model, adv, ds, target)
    model.train()
    assert adv_loss > clean_loss, (target, clean_loss.item(), adv_loss.item())
    again = pgd_attack(model, x, ds, target=target, eps=PGD_TEST_EPS, steps=10, seed=0)
    assert torch.equal(adv, again), "deterministic from the seed"


def test_pgd_projects_onto_the_eps_ball_and_valid_range(attack_setup):
    model, x, ds = attack_setup
    eps = 8 / 255
    x_edge = x.clone()
    x_edge[:, :, :8] = 0.0  # pixels at the range limits must stay inside [0, 1]
    x_edge[:, :, -8:] = 1.0
    adv = pgd_attack(model, x_edge, ds, target="det", eps=eps, alpha=eps, steps=3, random_start=True, seed=2)
    assert (adv - x_edge).abs().max() <= eps + 1e-6
    assert (adv - x_edge).abs().max() > eps / 2, "the attack uses its budget"
    assert adv.min() >= 0 and adv.max() <= 1


def test_the_default_target_is_the_detection_head_whatever_its_name(attack_setup):
    model, x, ds = attack_setup
    named = pgd_attack(model, x, ds, target="det", eps=PGD_TEST_EPS, steps=2, seed=0)
    assert torch.equal(pgd_attack(model, x, ds, eps=PGD_TEST_EPS, steps=2, seed=0), named)
    renamed = copy.deepcopy(model)
    renamed.heads = nn.ModuleDict({"a": model.heads["cls"], "b": model.heads["det"], "c": model.heads["emb"]})
    assert torch.equal(pgd_attack(renamed, x, ds, eps=PGD_TEST_EPS, steps=2, seed=0), named)
    renamed.heads = nn.ModuleDict({"a": model.heads["cls"]})
    with pytest.raises(
        ValueError, match=r"needs a detection head; the model's heads are \{'a': 'classification'\}"
    ):
        fgsm_attack(renamed, x, ds, eps=FGSM_TEST_EPS)


@pytest.mark.parametrize("target", ["cls", "det", "emb"])
def test_fgsm_raises_the_loss_within_eps(attack_setup, target):
    model, x, ds = attack_setup
    adv = fgsm_attack(model, x, ds, target=target, eps=FGSM_TEST_EPS)
    assert (adv - x).abs().max() <= FGSM_TEST_EPS + 1e-6
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert attack_loss(model, adv, ds, target) > attack_loss(model, x, ds, target)
    model.train()


def test_unit_pixel_round_trip():
    u8 = scenes(2)
    assert torch.equal(unit_to_pixels(pixels_to_unit(u8)), u8)
    assert torch.equal(pixels_to_unit(list(u8)), pixels_to_unit(u8))


def test_trunk_attack_raises_feature_distance(attack_setup):
    model, x, _ = attack_setup
    eps = 4 / 255
    adv = pgd_attack(model, x, None, target="trunk", eps=eps, steps=5, random_start=True, seed=1)
    assert (adv - x).abs().max() <= eps + 1e-6
    model.eval()
    with torch.no_grad():
        random = (x + eps * torch.sign(torch.randn(x.shape))).clamp(0, 1)
        d_adv = trunk_feature_distance(model, adv, x)
        d_rand = trunk_feature_distance(model, random, x)
        assert trunk_feature_distance(model, x, x).abs().max() < 1e-6
    model.train()
    assert (d_adv > d_rand).all(), (d_adv, d_rand)


def test_attack_bad_arguments(attack_setup):
    model, x, ds = attack_setup
    with pytest.raises(
        ValueError, match=r"target must be one of \['cls', 'det', 'emb', 'trunk'\], got 'seg'"
    ):
        pgd_attack(model, x, ds, target="seg")
    with pytest.raises(ValueError, match="inputs_float must lie in"):
        pgd_attack(model, x * 255, ds, target="cls")
    with pytest.raises(ValueError, match="inputs_float must be float"):
        pgd_attack(model, (x * 255).byte(), ds, target="cls")
    with pytest.raises(ValueError, match="eps must be in"):
        pgd_attack(model, x, ds, target="cls", eps=4)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        pgd_attack(model, x, ds, target="cls", steps=0)
    with pytest.raises(ValueError, match="needs one labelled data sample per image"):
        pgd_attack(model, x, None, target="det")
    with pytest.raises(ValueError, match="expected uint8"):
        pixels_to_unit(x)


# ---- group DRO and AugMix ------------------------------------------------------------------------
def test_group_dro_weights_move_to_the_worst_group():
    dro = GroupDROWeights(num_groups=3, eta=0.1)
    assert torch.allclose(dro.weights, torch.full((3,), 1 / 3))
    losses = torch.tensor([0.5, 2.0, 1.0])
    for _ in range(20):
        dro.update(losses)
    w = dro.weights
    assert w.argmax() == 1 and w[1] > w[2] > w[0]
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    # the robust loss weights the groups by q and passes gradients to the losses only
    group_losses = torch.tensor([0.5, 2.0, 1.0], requires_grad=True)
    robust = dro(group_losses)
    robust.backward()
    assert torch.allclose(group_losses.grad, dro.weights)
    # an absent group keeps its unnormalised weight
    before = dro.weights.clone()
    dro.update(torch.tensor([3.0, 0.0, 0.0]), group_counts=torch.tensor([4, 0, 0]))
    assert dro.weights[0] > before[0]
    assert torch.isclose(dro.weights[1] / dro.weights[2], before[1] / before[2])
    assert "weights" in dro.state_dict()


def test_group_mean_losses_and_dro_errors():
    means, counts = group_mean_losses(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 2]), 3)
    assert means.tolist() == [2.0, 0.0, 2.0] and counts.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match=r"group_ids must be in 0..2, got \[0, 3\]"):
        group_mean_losses(torch.tensor([1.0, 2.0]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="num_groups must be a positive int, got 0"):
        GroupDROWeights(0)
    with pytest.raises(ValueError, match="eta must be positive"):
        GroupDROWeights(2, eta=0.0)
    with pytest.raises(ValueError, match="adjustment needs group_sizes"):
        GroupDROWeights(2, adjustment=1.0)
    with pytest.raises(ValueError, match=r"group_losses must have shape \(2,\), got \(3,\)"):
        GroupDROWeights(2).update(torch.zeros(3))
    # the generalisation adjustment favours the small group at equal loss
    dro = GroupDROWeights(2, eta=0.5, adjustment=1.0, group_sizes=[10000, 4])
    dro.update(torch.tensor([1.0, 1.0]))
    assert dro.weights[1] > dro.weights[0]


def test_jensen_shannon_consistency():
    logits = torch.randn(4, 7)
    assert jensen_shannon_consistency(logits, logits.clone(), logits.clone()).abs() < 1e-6
    js = jensen_shannon_consistency(logits, logits + torch.randn(4, 7), logits)
    assert js > 0
    assert jensen_shannon_consistency(logits, -logits, logits) > 0
    dense = torch.randn(2, 5, 4, 4)
    assert jensen_shannon_consistency(dense, dense, dense).abs() < 1e-6
    assert jensen_shannon_consistency(dense, dense.flip(-1), dense) > 0
    # bounded by log(3) (JS of three distributions)
    one_hot = torch.eye(3)[None] * 100
    assert jensen_shannon_consistency(one_hot[:, 0], one_hot[:, 1], one_hot[:, 2]) <= math.log(3) + 1e-4
    with pytest.raises(ValueError, match="same shape"):
        jensen_shannon_consistency(logits, logits[:2], logits)


def test_augmix():
    x = scenes(6)
    a = augmix(x, severity=3, seed=1)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, augmix(x, severity=3, seed=1))
    assert not torch.equal(a, augmix(x, severity=3, seed=2))
    assert mean_abs_diff(a, x) > 0
    # per-image draws: the same image at two positions is augmented differently
    twin = x[:1].expand(2, -1, -1, -1).contiguous()
    t = augmix(twin, seed=0)
    assert not torch.equal(t[0], t[1])
    # milder at lower severity on average
    low = np.mean([mean_abs_diff(augmix(x, severity=1, seed=s), x) for s in range(4)])
    high = np.mean([mean_abs_diff(augmix(x, severity=5, seed=s), x) for s in range(4)])
    assert low < high
    only = augmix(x, width=2, depth=2, ops=["darkness"], seed=0)
    assert only.float().mean() < x.float().mean()
    assert "shot_noise" not in AUGMIX_OPS
    with pytest.raises(ValueError, match="ops must be a non-empty list"):
        augmix(x, ops=["fog"])
    with pytest.raises(ValueError, match="depth must be a positive int or -1"):
        augmix(x, depth=0)
    with pytest.raises(ValueError, match="severity must be an int in 1..5"):
        augmix(x, severity=7)
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, 3, H, W\)"):
        augmix(x.float())


def test_augmix_extra_ops_are_augmix_photometric_ops():
    x = scenes(4)
    assert set(AUGMIX_EXTRA_OPS).isdisjoint(CORRUPTIONS)
    for name in AUGMIX_EXTRA_OPS:
        for severity in (1, 5):
            y = augmentation_op(x, name, severity)
            assert y.shape == x.shape and y.dtype == torch.uint8, name
            assert torch.equal(y, augmentation_op(x, name, severity)), name
    # the parameters mean what AugMix means by them
    post = augmentation_op(x, "posterize", 5)
    assert torch.equal(post, x & 0b11100000)  # 3 bits kept
    sol = augmentation_op(x, "solarize", 4)  # threshold 128
    assert torch.equal(sol, torch.where(x >= 128, 255 - x, x))
    low = x // 4 + 64  # a low-contrast image: autocontrast stretches each channel to 0..255
    stretched = augmentation_op(low, "autocontrast", 3)
    assert stretched.amin(dim=(2, 3)).max() == 0 and stretched.amax(dim=(2, 3)).min() == 255
    eq = augmentation_op(low, "equalize", 1)
    assert eq.float().std() > low.float().std()
    # sharpening moves more pixels at higher severity
    sharp1, sharp5 = (mean_abs_diff(augmentation_op(x, "sharpness", s), x) for s in (1, 5))
    assert sharp5 > sharp1 > 0
    # corruptions go through the same entry point
    assert torch.equal(augmentation_op(x, "darkness", 2), corrupt(x, "darkness", 2))
    mixed = augmix(x, severity=5, ops=AUGMIX_EXTRA_OPS, seed=3)
    assert mixed.dtype == torch.uint8 and mean_abs_diff(mixed, x) > 0
    assert torch.equal(mixed, augmix(x, severity=5, ops=AUGMIX_EXTRA_OPS, seed=3))
    with pytest.raises(ValueError, match="unknown AugMix op 'fog'"):
        augmentation_op(x, "fog", 1)
    with pytest.raises(ValueError, match="severity must be in 1..5"):
        augmentation_op(x, "posterize", 6)
