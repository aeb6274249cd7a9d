"""Heads, neck and the multi-task model on hand-made samples."""

import copy

import pytest
import torch
from _helpers import batch, make_sample, model_cfg
from mtmnv3.heads import CenterDetHead, ClsHead, EmbeddingHead, resolve_tap
from mtmnv3.heads.base import conv_branch
from mtmnv3.heads.centers import box_cells, draw_gaussian, gaussian_radius, grid_centers
from mtmnv3.heads.cls_head import AttentionPool2d

from mtmnv3.backbone.variants import create_trunk
from mtmnv3.core.registry import MODELS
from mtmnv3.models import FPNLite, MultiTaskPerceptor


def test_resolve_tap_by_position_and_stride():
    info = create_trunk("tiny").feature_info
    assert resolve_tap(info, tap=-1) == 4
    assert resolve_tap(info, stride=16) == 3
    with pytest.raises(ValueError, match="no trunk stage has stride 64"):
        resolve_tap(info, stride=64)
    with pytest.raises(ValueError, match="exactly one of tap or stride"):
        resolve_tap(info)


def test_heads_read_channels_from_feature_info():
    for variant in ("tiny", "large"):
        trunk = create_trunk(variant)
        head = ClsHead(trunk.feature_info, num_classes=5, stride=16)
        assert head.pre_logits[0].in_channels == trunk.feature_info[3]["channels"]
        neck = FPNLite(trunk.feature_info, strides=(8, 16, 32), out_channels=16, num_outs=3)
        assert [trunk.feature_info[t]["stride"] for t in neck.taps] == [8, 16, 32]
        feats = trunk.forward_taps(torch.randn(1, 3, 96, 80), neck.taps)
        outs = neck(feats)
        assert [o.shape[-2:] for o in outs] == [(12, 10), (6, 5), (3, 3)]


def test_gaussian_targets():
    heat = torch.zeros(10, 10)
    draw_gaussian(heat, 0, 9, 2)  # at a corner: clipped, no error
    assert heat[9, 0] == 1 and heat.max() == 1 and heat[7, 0] < 1
    assert gaussian_radius(10, 10) > gaussian_radius(10, 10, min_overlap=0.9)
    centers, cells = grid_centers(torch.tensor([[0.0, 0.0, 16.0, 8.0]]), 8, 4, 4)
    assert centers.tolist() == [[1.0, 0.5]] and cells.tolist() == [[1, 0]]


def test_model_losses_and_gradients():
    model = MODELS.build(dict(type="MultiTaskPerceptor", **model_cfg()))
    data = model.data_preprocessor(batch([make_sample(), make_sample(label=5)]), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert set(losses) == {"loss_cls", "loss_det_heatmap", "loss_det_wh", "loss_det_offset", "loss_emb"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad


def test_partial_labels_train_only_their_heads():
    model = MultiTaskPerceptor(**model_cfg())
    samples = [make_sample(tasks=("cls",)), make_sample(tasks=("cls",), label=1)]
    data = model.data_preprocessor(batch(samples), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert losses["loss_cls"] > 0
    assert losses["loss_det_heatmap"] == 0 and losses["loss_emb"] == 0
    sum(losses.values()).backward()
    assert model.heads["cls"].fc.weight.grad.abs().sum() > 0
    assert model.heads["det"].heatmap[0].weight.grad.abs().sum() == 0
    # a detection-only sample does not train the classifier
    model.zero_grad()
    data = model.data_preprocessor(batch([make_sample(tasks=("det",))]), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert losses["loss_cls"] == 0 and losses["loss_det_heatmap"] > 0


def test_ignored_boxes_are_not_trained():
    head = CenterDetHead(in_channels=8, strides=(8,), num_classes=4)
    t = head._targets([make_sample(ignore=[True, False])], 16, 16, torch.device("cpu"))
    assert t["mask"].sum() == 1 and t["heatmap"].eq(1).sum() == 1
    assert t["care"][0, 0, 2, 2] == 0 and t["care"][0, 0, 15, 15] == 1


@pytest.mark.parametrize("branch_conv", ["standard", "separable"])
def test_detection_head_learns_and_decodes_boxes(branch_conv):
    torch.manual_seed(0)
    head = CenterDetHead(
        in_channels=8, strides=(8,), num_classes=4, feat_channels=16, branch_conv=branch_conv
    )
    sample = make_sample(boxes=[[16.0, 16.0, 48.0, 64.0]], labels=(2,), ids=(1,))
    feats = (torch.randn(1, 8, 16, 16),)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        sum(head.loss(head(feats), [sample]).values()).backward()
        opt.step()
    head.eval()
    dets = head.decode(head(feats))[0]
    assert dets["labels"][0] == 2 and dets["scores"][0] > 0.5
    torch.testing.assert_close(dets["bboxes"][0], torch.tensor([16.0, 16.0, 48.0, 64.0]), atol=3.0, rtol=0)


def test_predict_runs_only_active_heads_and_maps_to_original_coords():
    model = MultiTaskPerceptor(**model_cfg()).eval()
    s = make_sample()
    s.set_metainfo(dict(scale_factor=(0.5, 0.5), ori_shape=(256, 256), pad_param=(8, 8, 0, 0)))
    data = model.data_preprocessor(batch([s]), False)
    out = model.predict(data["inputs"], data["data_samples"])[0]
    assert out.pred_score.shape == (11,) and abs(out.pred_score.sum().item() - 1) < 1e-5
    inst = out.pred_instances
    assert inst.embeddings.shape[1] == 32
    torch.testing.assert_close(inst.embeddings.norm(dim=1), torch.ones(len(inst)))
    assert inst.bboxes.max() <= 256
    from mtmnv3.heads.center_head import to_original_coords

    back = to_original_coords(torch.tensor([[10.0, 18.0, 30.0, 48.0]]), s.metainfo)
    assert back.tolist() == [[20.0, 20.0, 60.0, 80.0]]
    model.set_active_heads(["cls"])
    assert model.required_taps(["cls"]) == [4]
    fresh = model.predict(data["inputs"])[0]
    assert "pred_instances" not in fresh and "pred_score" in fresh
    with pytest.raises(ValueError, match=r"unknown heads \['seg'\]"):
        model.set_active_heads(["seg"])
    with pytest.raises(RuntimeError, match="run the detection head first"):
        model.predict(data["inputs"], heads=["emb"])


def test_attention_pool_starts_as_average_and_learns_to_attend():
    x = torch.randn(4, 8, 5, 6)
    pool = AttentionPool2d(8, heads=2)
    torch.testing.assert_close(pool(x), x.mean((2, 3), keepdim=True))
    # The label is the content of the one "marked" position (channel 0 = 5);
    # every other position holds the content of a random class.
    # Average pooling mixes them; attention pooling learns to read the mark.
    torch.manual_seed(0)

    def make(n):
        labels = torch.randint(0, 3, (n,))
        other = torch.randint(0, 3, (n, 16))
        flat = torch.zeros(n, 4, 16)
        flat[:, 1:] = torch.nn.functional.one_hot(other, 3).float().transpose(1, 2)
        pos = torch.randint(0, 16, (n,))
        flat[torch.arange(n), 0, pos] = 5.0
        flat[torch.arange(n), 1:, pos] = torch.nn.functional.one_hot(labels, 3).float()
        return flat.view(n, 4, 4, 4), labels

    info = [dict(channels=4, stride=32)]
    accs = {}
    for kind in ("avg", "attn"):
        torch.manual_seed(0)
        head = ClsHead(info, num_classes=3, hidden_channels=0, dropout=0.0, pool=kind)
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(300):
            feats, labels = make(64)
            loss = torch.nn.functional.cross_entropy(head({0: feats}), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        feats, labels = make(512)
        accs[kind] = (head({0: feats}).argmax(1) == labels).float().mean().item()
    assert accs["attn"] > 0.95 > accs["avg"] + 0.2, accs
    with pytest.raises(ValueError, match="pool must be one of"):
        ClsHead(info, num_classes=3, pool="max")
    with pytest.raises(ValueError, match="attn_heads must be a positive int dividing the tap's 4 channels"):
        ClsHead(info, num_classes=3, pool="attn", attn_heads=3)


def test_object_loss_classifies_every_labelled_object_through_the_frame_classifier():
    info = [dict(channels=6, stride=32)]
    torch.manual_seed(0)
    head = ClsHead(info, num_classes=11, hidden_channels=8, dropout=0.0, object_loss_weight=0.5).train()
    tap = torch.randn(3, 6, 4, 4, requires_grad=True)
    samples = [
        make_sample(),  # objects at centre cells (0, 1) and (2, 1), classes 1 and 3
        make_sample(tasks=("cls",), labels=(5, 6)),  # no detection labels: no objects
        make_sample(labels=(7, 2), ignore=[True, False]),  # only the second object counts
    ]
    outputs = head({0: tap})
    assert set(outputs) == {"logits", "tap"} and outputs["tap"] is tap
    losses = head.loss(outputs, samples)
    assert set(losses) == {"loss_cls", "loss_cls_obj"}
    feats = torch.stack([tap[0, :, 1, 0], tap[0, :, 1, 2], tap[2, :, 1, 2]])
    expected = torch.nn.functional.cross_entropy(
        head.classify(feats[:, :, None, None]), torch.tensor([1, 3, 2])
    )
    torch.testing.assert_close(losses["loss_cls_obj"], 0.5 * expected)
    losses["loss_cls_obj"].backward()
    assert tap.grad[1].abs().sum() == 0 and tap.grad[0, :, 1, 0].abs().sum() > 0
    # bare logits (an eval-mode forward, as attacks use): the frame loss only
    logits = head.eval()({0: tap})
    assert isinstance(logits, torch.Tensor)
    torch.testing.assert_close(head.loss(logits, samples)["loss_cls"], losses["loss_cls"])
    assert set(head.loss(logits, samples)) == {"loss_cls"}
    # off by default: plain logits in training too
    plain = ClsHead(info, num_classes=11).train()
    assert isinstance(plain({0: tap}), torch.Tensor)
    with pytest.raises(ValueError, match="object_loss_weight must be a number >= 0"):
        ClsHead(info, num_classes=11, object_loss_weight=-1)


def test_box_cells_keep_cells_one_object_covers_and_every_centre():
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [32.0, 32.0, 96.0, 96.0], [100.0, 100.0, 110.0, 110.0]])
    obj, cells = box_cells(boxes, 32, 5, 5)
    got = sorted(zip(obj.tolist(), map(tuple, cells.tolist()), strict=True))
    # cell centres at 16, 48, 80, ...: (1, 1) lies in both first boxes and is kept only as
    # the first box's centre cell; the tiny third box covers no cell centre but keeps its centre
    assert got == [
        (0, (0, 0)),
        (0, (0, 1)),
        (0, (1, 0)),
        (0, (1, 1)),
        (1, (1, 2)),
        (1, (2, 1)),
        (1, (2, 2)),
        (2, (3, 3)),
    ]


def test_object_loss_over_box_cells_averages_every_covered_cell():
    info = [dict(channels=6, stride=32)]
    torch.manual_seed(0)
    head = ClsHead(
        info, num_classes=11, hidden_channels=8, dropout=0.0, object_loss_weight=1.0, object_cells="box"
    )
    tap = torch.randn(1, 6, 4, 4)
    # cell centres at 16, 48, 80, 112: BOXES (10, 12, 50, 60) covers x, y in {16, 48} and
    # (64, 30, 120, 90) x in {80, 112}, y in {48, 80}; no cell lies in both
    loss = head.train().loss(head({0: tap}), [make_sample()])["loss_cls_obj"]
    cells = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (3, 1), (2, 2), (3, 2)]
    feats = torch.stack([tap[0, :, y, x] for x, y in cells])
    target = torch.tensor([1, 1, 1, 1, 3, 3, 3, 3])
    expected = torch.nn.functional.cross_entropy(head.classify(feats[:, :, None, None]), target)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="object_cells must be one of"):
        ClsHead(info, num_classes=11, object_cells="mask")


def test_separable_branch_is_depthwise_then_pointwise_and_cheaper():
    std, sep = conv_branch(64, 64, 10), conv_branch(64, 64, 10, "separable")
    dw, pw = sep[0], sep[1]
    assert dw.groups == 64 and dw.kernel_size == (3, 3) and pw.kernel_size == (1, 1)
    x = torch.randn(2, 64, 16, 16)
    assert sep(x).shape == std(x).shape == (2, 10, 16, 16)
    n_std, n_sep = (sum(p.numel() for p in b.parameters()) for b in (std, sep))
    assert n_sep * 4 < n_std  # 3x3 weights: 64*64*9 vs 64*9 + 64*64
    # Both heads take it, and the heatmap keeps CenterNet's prior bias on its output conv.
    det = CenterDetHead(in_channels=64, strides=(8,), num_classes=10, branch_conv="separable")
    torch.testing.assert_close(det.heatmap[-1].bias, torch.full((10,), -2.19))
    emb = EmbeddingHead(in_channels=64, strides=(8,), num_ids=5, embed_dim=32, branch_conv="separable")
    assert emb((x,)).shape == (2, 32, 16, 16) and emb.embed[0].groups == 64
    with pytest.raises(ValueError, match=r"conv must be one of \('standard', 'separable'\), got 'dw'"):
        CenterDetHead(in_channels=8, strides=(8,), num_classes=4, branch_conv="dw")


def test_bad_configs_give_clear_errors():
    with pytest.raises(KeyError, match="unknown head type 'SegHead'"):
        MultiTaskPerceptor(**model_cfg(heads=dict(seg=dict(type="SegHead"))))
    with pytest.raises(ValueError, match="non-empty dict"):
        MultiTaskPerceptor(**model_cfg(heads={}))
    with pytest.raises(ValueError, match=r"task_weights names \['seg'\]"):
        MultiTaskPerceptor(**model_cfg(task_weights=dict(seg=1.0)))
    with pytest.raises(ValueError, match="num_ids must be an int >= 2 for loss_type=.id., got 1"):
        EmbeddingHead(in_channels=8, strides=(8,), num_ids=1)


def test_out_of_range_identity_raises():
    model = MultiTaskPerceptor(**model_cfg())
    data = model.data_preprocessor(batch([make_sample(ids=(3, 99))]), True)
    with pytest.raises(ValueError, match="identity 99 out of range for num_ids=20"):
        model.loss(data["inputs"], data["data_samples"])


def test_nan_loss_names_task_and_iteration():
    model = MultiTaskPerceptor(**model_cfg())
    losses = {"cls": {"loss_cls": torch.tensor(1.0)}, "det": {"loss_det_wh": torch.tensor(float("nan"))}}
    with pytest.raises(FloatingPointError, match=r"loss_det_wh=nan in task 'det' at iteration"):
        model.combine_losses(losses)


def test_channels_last_model_matches_contiguous_one():
    torch.manual_seed(0)
    plain = MultiTaskPerceptor(**model_cfg())
    fast = MultiTaskPerceptor(**model_cfg(), channels_last=True)
    fast.load_state_dict(plain.state_dict())

    def first_conv(model):
        return next(
            m.weight
            for m in model.trunk.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
        )

    assert first_conv(fast).is_contiguous(memory_format=torch.channels_last)
    assert not first_conv(plain).is_contiguous(memory_format=torch.channels_last)
    plain.eval(), fast.eval()
    data = plain.data_preprocessor(batch([make_sample(), make_sample(label=5)]), True)
    with torch.no_grad():
        a = plain.loss(data["inputs"], data["data_samples"])
        b = fast.loss(data["inputs"], data["data_samples"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, msg=k)
        oa = plain.head_outputs(data["inputs"], ["cls", "det", "emb"])
        ob = fast.head_outputs(data["inputs"], ["cls", "det", "emb"])
        torch.testing.assert_close(oa, ob, rtol=1e-4, atol=1e-4)
        # Decoding reads the channels-last maps too (an untrained model's
        # near-tied peaks may come out in another order, so compare scores).
        pa = plain.predict(data["inputs"], copy.deepcopy(data["data_samples"]))
        pb = fast.predict(data["inputs"], copy.deepcopy(data["data_samples"]))
    for sa, sb in zip(pa, pb):
        assert int(sa.pred_label) == int(sb.pred_label)
        torch.testing.assert_close(
            sa.pred_instances.scores.sort().values, sb.pred_instances.scores.sort().values, rtol=0, atol=1e-3
        )
    # A checkpoint of the channels-last model loads into a plain one.
    plain.load_state_dict(fast.state_dict())


def test_frozen_parts_keep_their_weights_and_statistics_through_a_training_step():
    from mmengine.optim import OptimWrapper

    torch.manual_seed(0)
    model = MultiTaskPerceptor(**model_cfg(), frozen=("trunk", "neck", "cls", "det"))
    before = copy.deepcopy(model.state_dict())
    model.train()
    assert model.trunk.training is False and model.heads["det"].training is False
    assert model.heads["emb"].training is True
    assert model.trainable_heads == ["emb"] and model.loss_weighting.task_names == ("emb",)
    # only the trainable head's parameters take gradients
    assert all(not p.requires_grad for p in model.trunk.parameters())
    assert all(p.requires_grad for p in model.heads["emb"].parameters())
    wrapper = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1))
    log = model.train_step(batch([make_sample(), make_sample(label=5)]), wrapper)
    assert "loss_emb" in log and "loss_cls" not in log and "loss_det_heatmap" not in log
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("heads.emb.") for k in changed), changed  # batch-norm buffers too
    # eval() and train() again: frozen parts stay in eval mode
    model.eval().train()
    assert model.neck.training is False and model.heads["emb"].training is True


def test_frozen_names_are_checked():
    with pytest.raises(ValueError, match=r"frozen must name distinct parts among \['trunk', 'neck', 'cls'"):
        MultiTaskPerceptor(**model_cfg(), frozen=("backbone",))
    with pytest.raises(ValueError, match="leaves no head to train"):
        MultiTaskPerceptor(**model_cfg(), frozen=("cls", "det", "emb"))
    # a frozen part is named once
    with pytest.raises(ValueError, match="distinct"):
        MultiTaskPerceptor(**model_cfg(), frozen=("trunk", "trunk"))
