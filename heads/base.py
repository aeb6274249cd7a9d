"""The plug-in head contract.

A head declares the one task it solves (one of :data:`HEAD_TASKS`), which
trunk stage taps (or the shared neck) it reads, and implements ``forward`` (features -> raw outputs), ``loss`` (raw outputs +
data samples -> dict of named losses) and ``predict`` (raw outputs -> fields
written onto the data samples). Heads read channels and strides from the
trunk's ``feature_info`` (or the neck's ``out_channels``/``strides``), never
from hard-coded numbers.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

__all__ = [
    "BaseHead",
    "BRANCH_CONVS",
    "CLASSIFICATION",
    "DETECTION",
    "EMBEDDING",
    "HEAD_TASKS",
    "TASK_LABELS",
    "conv_branch",
    "head_task",
    "heads_by_task",
    "resolve_tap",
]

#: Kinds of 3x3 conv in a dense head branch (see :func:`conv_branch`).
BRANCH_CONVS = ("standard", "separable")

CLASSIFICATION = "classification"
DETECTION = "detection"
EMBEDDING = "embedding"
#: The tasks a head can declare (``BaseHead.task``); each model has at most one head per task.
HEAD_TASKS: tuple[str, ...] = (CLASSIFICATION, DETECTION, EMBEDDING)
#: The label kind each head task trains on: the data samples' metainfo ``tasks``
#: name labels ``'cls'``, ``'det'`` and ``'track'`` (see ``mtmnv3.data.common.TASKS``).
TASK_LABELS: dict[str, str] = {CLASSIFICATION: "cls", DETECTION: "det", EMBEDDING: "track"}
_LABEL_TASKS = {label: task for task, label in TASK_LABELS.items()}


def head_task(head: Any) -> str:
    """The task a head declares: of a head (its ``task``) or a task string.

    A string may also be a label kind (``'cls'``, ``'det'``, ``'track'``), as
    ONNX sidecars written before heads declared tasks record it.

    Raises:
        ValueError: the task is not one of :data:`HEAD_TASKS` (or a label kind).
    """
    task = head if isinstance(head, str) else getattr(head, "task", None)
    task = _LABEL_TASKS.get(task, task) if isinstance(task, str) else task
    if task not in HEAD_TASKS:
        raise ValueError(f"a head must declare a task among {HEAD_TASKS}, got {task!r} from {head!r}")
    return task


def heads_by_task(heads: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, str]:
    """Task -> head name of a model's heads, found by the task each head declares.

    Args:
        heads: head name -> head (anything with a ``task``) or task string,
            e.g. ``model.heads`` or an ONNX sidecar's ``{name: meta['task']}``.
        required: tasks that must have a head (e.g. ``(DETECTION,)``).

    Returns:
        ``{task: head name}`` for the tasks present, in :data:`HEAD_TASKS` order.

    Raises:
        ValueError: two heads declare the same task, a head declares no known
            task, or a required task has no head; the message names the heads present.
    """
    found: dict[str, list[str]] = {}
    for name, head in heads.items():
        found.setdefault(head_task(head), []).append(name)
    present = {name: head_task(head) for name, head in heads.items()}
    twice = {task: names for task, names in found.items() if len(names) > 1}
    if twice:
        raise ValueError(f"heads {twice} declare the same task; each task has one head, heads are {present}")
    for task in required:
        if task not in HEAD_TASKS:
            raise ValueError(f"required tasks must be among {HEAD_TASKS}, got {task!r}")
        if task not in found:
            raise ValueError(f"this needs a {task} head; the model's heads are {present}")
    return {task: found[task][0] for task in HEAD_TASKS if task in found}


def resolve_tap(
    feature_info: Sequence[dict[str, Any]], tap: int | None = None, stride: int | None = None
) -> int:
    """Pick a stage index by position (``tap``, negatives allowed) or by stride
    (the deepest stage with that output stride)."""
    n = len(feature_info)
    if (tap is None) == (stride is None):
        raise ValueError(f"give exactly one of tap or stride, got tap={tap!r}, stride={stride!r}")
    if tap is not None:
        if not isinstance(tap, int) or not -n <= tap < n:
            raise ValueError(f"tap must be an int in [{-n}, {n - 1}], got {tap!r}")
        return tap % n
    matches = [i for i, f in enumerate(feature_info) if f["stride"] == stride]
    if not matches:
        raise ValueError(
            f"no trunk stage has stride {stride}; strides are {[f['stride'] for f in feature_info]}"
        )
    return matches[-1]


def conv_branch(
    in_channels: int, feat_channels: int, out_channels: int, conv: str = "standard"
) -> nn.Sequential:
    """A dense prediction branch: 3x3 conv, ReLU, 1x1 conv to ``out_channels``.

    ``conv='standard'`` is CenterNet's/FairMOT's full 3x3 conv.
    ``conv='separable'`` splits it into a depthwise 3x3 and a pointwise 1x1
    (SSDLite's heads, Sandler et al. 2018): ~8x fewer multiply-adds at 64
    channels. The last module is always the output conv.
    """
    if conv not in BRANCH_CONVS:
        raise ValueError(f"conv must be one of {BRANCH_CONVS}, got {conv!r}")
    if conv == "separable":
        first: list[nn.Module] = [
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.Conv2d(in_channels, feat_channels, 1),
        ]
    else:
        first = [nn.Conv2d(in_channels, feat_channels, 3, padding=1)]
    return nn.Sequential(*first, nn.ReLU(inplace=True), nn.Conv2d(feat_channels, out_channels, 1))


class BaseHead(nn.Module, metaclass=abc.ABCMeta):
    """Base class of plug-in heads.

    Attributes:
        task: the task the head solves, one of :data:`HEAD_TASKS` (set by each head class).
        taps: trunk stage indices the head reads directly (empty if it reads the neck).
        uses_neck: whether the head reads the shared neck's outputs.
    """

    task: str = ""
    uses_neck: bool = False

    def __init__(self) -> None:
        super().__init__()
        head_task(self)
        self.taps: tuple[int, ...] = ()

    @property
    def label_kind(self) -> str:
        """The label kind the head trains on (samples' metainfo ``tasks``): ``TASK_LABELS[task]``."""
        return TASK_LABELS[self.task]

    @abc.abstractmethod
    def forward(self, feats: Sequence[Tensor]) -> Any:
        """Trunk taps ``{stage: tensor}`` (or neck outputs) -> raw head outputs."""

    @abc.abstractmethod
    def loss(self, outputs: Any, data_samples: Sequence[Any]) -> dict[str, Tensor]:
        """Named losses on the samples that carry this head's labels."""

    @abc.abstractmethod
    def predict(self, outputs: Any, data_samples: Sequence[Any]) -> None:
        """Write predictions onto the data samples."""
