"""Samplers that keep frames of the same video together in a batch.

Batch-level identity losses (``EmbeddingHead(loss_type='contrastive')``)
need the other views of an object in the same batch; uniform shuffling over
thousands of short videos almost never puts two frames of one video
together.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sized

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mtmnv3.core.registry import DATA_SAMPLERS

__all__ = ["VideoGroupSampler", "video_groups"]


def video_groups(dataset: Sized, frames_per_group: int) -> list[list[int]]:
    """Indices of ``dataset`` cut into groups of up to ``frames_per_group``
    consecutive frames of one video (frames without a video are groups of one).

    Reads ``video_id`` and ``frame_id`` from ``dataset.get_data_info(i)``.
    """
    if not hasattr(dataset, "get_data_info"):
        raise TypeError(
            f"VideoGroupSampler needs a dataset with get_data_info(), got {type(dataset).__name__}"
        )
    by_video: dict[int, list[tuple[int, int]]] = defaultdict(list)
    singles: list[list[int]] = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        video = int(info.get("video_id", -1))
        if video < 0:
            singles.append([i])
        else:
            by_video[video].append((int(info.get("frame_id", 0)), i))
    groups = []
    for video in sorted(by_video):
        frames = [i for _, i in sorted(by_video[video])]
        groups += [frames[k : k + frames_per_group] for k in range(0, len(frames), frames_per_group)]
    return groups + singles


@DATA_SAMPLERS.register_module()
class VideoGroupSampler(Sampler):
    """Shuffles groups of consecutive frames of one video, not single frames.

    Every epoch the groups (see :func:`video_groups`) are shuffled and their
    frames emitted together, so a batch of ``B`` frames holds about
    ``B / frames_per_group`` videos with ``frames_per_group`` views each.
    Distributed: groups (not frames) are dealt to ranks, so a group never
    straddles two processes; each rank yields ``ceil(N / world_size)``
    indices (wrapping around, like mmengine's ``DefaultSampler`` with
    ``round_up``).

    Args:
        dataset: a dataset with ``get_data_info`` returning ``video_id`` and
            ``frame_id``.
        frames_per_group: frames of one video kept together (>= 2 for the
            contrastive identity loss).
        shuffle: shuffle the groups each epoch.
        seed: shuffling seed (identical on every rank; default: synced random).
    """

    def __init__(
        self, dataset: Sized, frames_per_group: int = 2, shuffle: bool = True, seed: int | None = None
    ) -> None:
        if not isinstance(frames_per_group, int) or frames_per_group < 1:
            raise ValueError(f"frames_per_group must be a positive int, got {frames_per_group!r}")
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.frames_per_group = frames_per_group
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0
        self.groups = video_groups(dataset, frames_per_group)
        self.num_samples = math.ceil(len(dataset) / self.world_size)

    def __iter__(self) -> Iterator[int]:
        order = list(range(len(self.groups)))
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.groups), generator=g).tolist()
        mine = [i for pos in order[self.rank :: self.world_size] for i in self.groups[pos]]
        if not mine:  # more ranks than groups
            mine = [i for g in self.groups for i in g]
        reps = self.num_samples // len(mine) + 1
        return iter((mine * reps)[: self.num_samples])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (called by mmengine's loops)."""
        self.epoch = epoch
