"""The modules that ONNX export traces: the model's raw head outputs, trunk stage pieces, heads from taps.

Each wraps the multi-task model so that its inputs and outputs are plain
tensors in a fixed, named order (:func:`output_layout`), which is what an
exported graph (and a PT2E capture) needs. :func:`without_extra_state`
detaches, while tracing, what the tracer cannot take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

__all__ = [
    "INPUT_NAME",
    "HeadOutputsGraph",
    "HeadsFromTapsGraph",
    "TrunkPieceGraph",
    "output_layout",
    "without_extra_state",
]

#: Name of the (normalised image) graph input.
INPUT_NAME = "images"


def output_layout(outputs: Mapping[str, Any], heads: Sequence[str]) -> list[dict[str, Any]]:
    """Flatten ``{head: Tensor | {key: Tensor}}`` into named outputs, in a fixed order."""
    layout, seen = [], set()
    for h in heads:
        out = outputs[h]
        items = [(None, out)] if isinstance(out, Tensor) else list(out.items())
        for key, t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"head {h!r} output {key!r} is a {type(t).__name__}, not a tensor")
            name = h if key is None else f"{h}_{key}"
            if name in seen or name == INPUT_NAME:
                raise ValueError(f"output name {name!r} is not unique; rename head {h!r}")
            seen.add(name)
            layout.append(dict(name=name, head=h, key=key, shape=list(t.shape)))
    return layout


def _pick(outputs: Mapping[str, Any], layout: Sequence[dict[str, Any]]) -> tuple[Tensor, ...]:
    return tuple(outputs[o["head"]] if o["key"] is None else outputs[o["head"]][o["key"]] for o in layout)


class HeadOutputsGraph(nn.Module):
    """Normalised images -> the named heads' raw tensors (trunk only as deep as needed)."""

    def __init__(self, model: nn.Module, heads: Sequence[str], layout: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.model = model
        self.heads = tuple(heads)
        self.layout = list(layout)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return _pick(self.model.head_outputs(images, self.heads), self.layout)


class TrunkPieceGraph(nn.Module):
    """Trunk stages ``start..`` -> the outputs of the listed stages (through ``forward_taps``)."""

    def __init__(self, trunk: nn.Module, start: int, out_stages: Sequence[int]) -> None:
        super().__init__()
        self.trunk = trunk
        self.start = start
        self.out_stages = tuple(out_stages)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        taps = self.trunk.forward_taps(x, self.out_stages, start=self.start)
        return tuple(taps[s] for s in self.out_stages)


class HeadsFromTapsGraph(nn.Module):
    """Trunk taps (in ``taps`` order) -> the named heads' raw tensors (neck included)."""

    def __init__(
        self, model: nn.Module, heads: Sequence[str], taps: Sequence[int], layout: Sequence[dict[str, Any]]
    ) -> None:
        super().__init__()
        self.model = model
        self.heads = tuple(heads)
        self.taps = tuple(taps)
        self.layout = list(layout)
        self.uses_neck = any(model.heads[h].uses_neck for h in heads)

    def forward(self, *tap_tensors: Tensor) -> tuple[Tensor, ...]:
        feats = dict(zip(self.taps, tap_tensors))
        neck_out = self.model.neck(feats) if self.uses_neck else None
        heads = self.model.heads
        outputs = {h: heads[h](neck_out if heads[h].uses_neck else feats) for h in self.heads}
        return _pick(outputs, self.layout)


@contextlib.contextmanager
def without_extra_state(module: nn.Module) -> Iterator[None]:
    """Detach, for the export, the submodules that keep extra (non-tensor) state.

    A loss-weighting method's optimiser (GradNorm's) is such state; it
    plays no part in inference, and the TorchScript tracer fails on any
    state-dict entry that is not a tensor. The submodules are put back on exit.
    """
    removed = []
    for parent in module.modules():
        for name, child in list(parent._modules.items()):
            if child is not None and type(child).get_extra_state is not nn.Module.get_extra_state:
                removed.append((parent, name, child))
    for parent, name, _ in removed:
        del parent._modules[name]
    try:
        yield
    finally:
        for parent, name, child in removed:
            parent._modules[name] = child
