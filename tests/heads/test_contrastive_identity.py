"""The contrastive identity loss, its head option and the video-group sampler."""

import math

import pytest
import torch
from _helpers import batch, make_sample, model_cfg
from mtmnv3.heads import EmbeddingHead
from mtmnv3.heads.embedding_head import contrastive_identity_loss

from mtmnv3.core.registry import DATA_SAMPLERS
from mtmnv3.data import VideoGroupSampler, video_groups
from mtmnv3.models import MultiTaskPerceptor


def test_contrastive_loss_matches_hand_computed_value():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    same_video = torch.zeros(4, dtype=torch.long)
    # Anchor 0: positive 1 (cos 1), negatives 2, 3 (cos 0), T = 1:
    # -log(e / (e + 1 + 1)); every anchor is alike by symmetry.
    loss = contrastive_identity_loss(e, torch.tensor([1, 1, 2, 2]), same_video, 1.0)
    assert loss.item() == pytest.approx(math.log((math.e + 2) / math.e), rel=1e-6)
    # A lower temperature sharpens: matched pairs cost less.
    assert contrastive_identity_loss(e, torch.tensor([1, 1, 2, 2]), same_video, 0.1) < loss


def test_identities_are_compared_within_a_video_only():
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    # Same instance ids in two videos: no positives at all -> zero, still differentiable.
    loss = contrastive_identity_loss(e, torch.tensor([1, 2, 1, 2]), torch.tensor([0, 0, 1, 1]), 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert e.grad is not None


def test_contrastive_loss_pulls_views_together_and_pushes_others_apart():
    torch.manual_seed(0)
    ids = torch.arange(6).repeat(2)
    raw = torch.randn(12, 16, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.05)
    videos = torch.zeros(12, dtype=torch.long)
    for _ in range(100):
        loss = contrastive_identity_loss(torch.nn.functional.normalize(raw, dim=1), ids, videos, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    e = torch.nn.functional.normalize(raw.detach(), dim=1)
    sim = e @ e.t()
    same = (ids[:, None] == ids[None]) & ~torch.eye(12, dtype=torch.bool)
    other = ~same & ~torch.eye(12, dtype=torch.bool)
    # After training every view
    # is nearer its twin than any other object, by a margin.
    assert sim[same].min() > sim[other].max() + 0.3


def test_contrastive_head_has_no_identity_classifier_and_trains():
    head = EmbeddingHead(in_channels=8, strides=(8,), loss_type="contrastive")
    assert head.classifier is None and not any(p.numel() > 8 * 64 * 9 for p in head.parameters())
    cfg = model_cfg()
    cfg["heads"]["emb"] = dict(type="EmbeddingHead", loss_type="contrastive", embed_dim=32, feat_channels=32)
    model = MultiTaskPerceptor(**cfg)
    # Two frames of one video with the same two objects: two positive pairs.
    samples = [make_sample(), make_sample()]
    for s in samples:
        s.set_metainfo(dict(video_id=3))
    data = model.data_preprocessor(batch(samples), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert losses["loss_emb"] > 0
    losses["loss_emb"].backward()
    assert model.heads["emb"].embed[0].weight.grad.abs().sum() > 0


def test_embedding_head_config_errors():
    with pytest.raises(ValueError, match="loss_type must be one of"):
        EmbeddingHead(in_channels=8, strides=(8,), num_ids=4, loss_type="triplet")
    with pytest.raises(ValueError, match="num_ids must be an int >= 2 for loss_type='id', got None"):
        EmbeddingHead(in_channels=8, strides=(8,))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        EmbeddingHead(in_channels=8, strides=(8,), loss_type="contrastive", temperature=0)


class FramesOfVideos:
    """A minimal dataset: ``videos`` videos of ``frames`` frames (stored shuffled) plus 2 stills."""

    def __init__(self, videos=5, frames=4):
        g = torch.Generator().manual_seed(1)
        self.infos = [dict(video_id=v, frame_id=f + 1) for v in range(videos) for f in range(frames)]
        self.infos = [self.infos[i] for i in torch.randperm(len(self.infos), generator=g).tolist()]
        self.infos += [dict(video_id=-1, frame_id=1), dict(video_id=-1, frame_id=1)]

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, i):
        return dict(self.infos[i])


def test_video_groups_are_consecutive_frames_of_one_video():
    ds = FramesOfVideos()
    groups = video_groups(ds, 2)
    assert sorted(i for g in groups for i in g) == list(range(len(ds)))
    for g in groups:
        infos = [ds.get_data_info(i) for i in g]
        assert len({d["video_id"] for d in infos}) == 1
        if infos[0]["video_id"] >= 0:
            assert len(g) == 2 and infos[1]["frame_id"] == infos[0]["frame_id"] + 1
        else:
            assert len(g) == 1


def test_sampler_keeps_groups_together_and_reshuffles_per_epoch():
    ds = FramesOfVideos()
    sampler = DATA_SAMPLERS.build(
        dict(type="VideoGroupSampler", frames_per_group=2, seed=0), default_args=dict(dataset=ds)
    )
    first = list(sampler)
    assert len(first) == len(sampler) == len(ds) and sorted(first) == list(range(len(ds)))
    groups = {tuple(g) for g in video_groups(ds, 2)}
    pos = 0
    while pos < len(first):  # the stream is a concatenation of whole groups
        size = 2 if ds.get_data_info(first[pos])["video_id"] >= 0 else 1
        assert tuple(first[pos : pos + size]) in groups
        pos += size
    assert list(sampler) == first  # deterministic
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_sampler_deals_whole_groups_to_ranks(monkeypatch):
    import mtmnv3.data.samplers as samplers

    ds = FramesOfVideos(videos=6, frames=2)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(samplers, "get_dist_info", lambda rank=rank: (rank, 2))
        sampler = VideoGroupSampler(ds, frames_per_group=2, seed=3)
        idx = list(sampler)
        assert len(idx) == len(sampler) == math.ceil(len(ds) / 2)
        seen.append(idx)
    videos = [{ds.get_data_info(i)["video_id"] for i in idx} - {-1} for idx in seen]
    assert not videos[0] & videos[1]  # a video's frames never split across ranks
    assert sorted(set(seen[0]) | set(seen[1])) == list(range(len(ds)))
    with pytest.raises(ValueError, match="frames_per_group must be a positive int"):
        VideoGroupSampler(ds, frames_per_group=0)
    with pytest.raises(TypeError, match="needs a dataset with get_data_info"):
        VideoGroupSampler(list(range(4)))
