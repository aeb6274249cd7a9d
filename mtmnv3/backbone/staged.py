"""The stage API every trunk shares: a flat ``blocks`` list cut into stages by a :class:`StagePlan`.

A trunk (MobileNetV3, a timm successor) builds ``blocks``, ``block_strides``
and ``block_info`` (per block: channels, stride, MACs, params) and sets
``trunk_label``; this base resolves the stage plan and ``out_indices``,
describes the stages (``feature_info``), runs any contiguous range of stages
(``forward_stages``, ``forward_taps``, ``forward``) and handles
``frozen_stages`` and ``norm_eval``. Stage MACs at another input size
(``stage_macs``) stay with each trunk: they are counted differently.

The base also owns the stem option ``input_norm`` (:mod:`mtmnv3.backbone.input_norm`):
a trunk calls :meth:`StagedTrunk._init_input_norm` in its constructor, before
``_describe_stages`` and ``_group_stage_modules``. The module runs first in
stage 0 and counts there; it is not one of ``blocks``, so stage plans, block
tables and state dict names of the blocks are the same with it on or off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mtmnv3.backbone.complexity import num_params
from mtmnv3.backbone.input_norm import build_input_norm, check_input_norm
from mtmnv3.backbone.plan import StagePlan

__all__ = ["StagedTrunk"]


class StagedTrunk(BaseModule):
    """Base of the trunks: the stage API over ``self.blocks`` (see the module docstring)."""

    #: the trunk's name in stage plans and messages (set by each trunk)
    trunk_label: str = "trunk"

    def _init_input_norm(self, input_norm: str | None) -> None:
        """Set ``input_norm`` (the option's value) and ``input_norm_module`` (``None`` when off).

        Raises:
            ValueError: an unknown value; the message names the allowed ones.
        """
        self.input_norm = check_input_norm(input_norm)
        # A module registers ('input_norm_module.*' in the state dict when it has
        # parameters); None stays a plain attribute, so the state dict is unchanged.
        self.input_norm_module = build_input_norm(self.input_norm)

    def input_norm_macs(self, height: int, width: int) -> int:
        """MACs of the input normalisation on one ``height x width`` image (0 when off)."""
        module = self.input_norm_module
        return 0 if module is None else module.macs(height, width)

    def _group_stage_modules(self) -> tuple[tuple[nn.Module, ...], ...]:
        """The modules each stage runs, in order: the plan's blocks, the input
        normalisation first in stage 0. Plain tuples of registered modules, so the
        hot loop does no ModuleList indexing."""
        stages = [[self.blocks[i] for i in range(a, b)] for a, b in self.stage_plan.stages]
        if self.input_norm_module is not None:
            stages[0].insert(0, self.input_norm_module)
        return tuple(tuple(s) for s in stages)

    def plan_stage_modules(self, plan: StagePlan | None = None) -> list[nn.Sequential]:
        """One ``nn.Sequential`` per stage of ``plan`` (default: the trunk's), sharing the
        trunk's modules, the input normalisation first in stage 0: running them in
        order is ``forward_stages``.

        Raises:
            ValueError: the plan covers another number of blocks.
        """
        plan = self.stage_plan if plan is None else plan
        if plan.num_blocks != len(self.blocks):
            raise ValueError(f"plan covers {plan.num_blocks} blocks but the trunk has {len(self.blocks)}")
        stages = [nn.Sequential(*(self.blocks[i] for i in range(a, b))) for a, b in plan.stages]
        if self.input_norm_module is not None:
            stages[0] = nn.Sequential(self.input_norm_module, *stages[0])
        return stages

    def _resolve_plan(self, plan: StagePlan | Mapping[str, Any] | str | os.PathLike | None) -> StagePlan:
        if plan is None:
            return StagePlan.from_strides(self.block_strides, arch=self.trunk_label)
        if isinstance(plan, (str, os.PathLike)):
            plan = StagePlan.load(plan)
        elif isinstance(plan, Mapping):
            plan = StagePlan.from_dict(dict(plan))
        elif not isinstance(plan, StagePlan):
            raise TypeError(f"stage_plan must be a StagePlan, dict, path or None, got {type(plan).__name__}")
        if plan.num_blocks != len(self.blocks):
            raise ValueError(
                f"stage plan covers {plan.num_blocks} blocks but this {self.trunk_label} trunk has {len(self.blocks)}"
            )
        return plan

    def _describe_stages(self) -> list[dict[str, Any]]:
        info = []
        for i, (a, b) in enumerate(self.stage_plan.stages):
            last = self.block_info[b - 1]
            macs = sum(bi["macs"] for bi in self.block_info[a:b])
            params = sum(bi["params"] for bi in self.block_info[a:b])
            if i == 0 and self.input_norm_module is not None:
                macs += self.input_norm_macs(self.reference_size, self.reference_size)
                params += num_params(self.input_norm_module)
            info.append(
                dict(
                    name=f"stage{i}",
                    module=f"blocks.{a}" if b - a == 1 else f"blocks.{a}-{b - 1}",
                    blocks=(a, b),
                    channels=last["channels"],
                    stride=last["stride"],
                    macs=macs,
                    params=params,
                )
            )
        return info

    def _resolve_out_indices(self, out_indices: Sequence[int] | None) -> tuple[int, ...]:
        n = self.num_stages
        if out_indices is None:
            return tuple(range(n))
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        resolved = []
        for i in out_indices:
            if not isinstance(i, int) or not -n <= i < n:
                raise ValueError(
                    f"out_indices entries must be ints in [{-n}, {n - 1}], got {list(out_indices)}"
                )
            resolved.append(i % n)
        if len(set(resolved)) != len(resolved) or not resolved:
            raise ValueError(f"out_indices must be non-empty and unique, got {list(out_indices)}")
        return tuple(sorted(resolved))

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages + 1):
            for block in self._stage_modules[i]:
                block.eval()
                for p in block.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> StagedTrunk:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @property
    def num_stages(self) -> int:
        return self.stage_plan.num_stages

    def stage_in_channels(self, stage: int) -> int:
        """Channels a stage expects as input (3 for stage 0)."""
        return 3 if stage == 0 else self.feature_info[stage - 1]["channels"]

    def _check_range(self, start: int, end: int | None) -> int:
        n = self.num_stages
        end = n if end is None else end
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= n):
            raise ValueError(f"need 0 <= start < end <= {n}, got start={start!r}, end={end!r}")
        return end

    def _check_input(self, x: Tensor, start: int) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
        expected = self.stage_in_channels(start)
        if x.dim() != 4 or x.shape[1] != expected:
            what = "Nx3xHxW images" if start == 0 else f"Nx{expected}xHxW stage{start - 1} features"
            raise ValueError(f"stage {start} expects {what}, got a tensor of shape {tuple(x.shape)}")

    def _run_stage(self, x: Tensor, stage: int) -> Tensor:
        if self.with_cp and self.training and x.requires_grad:
            for block in self._stage_modules[stage]:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        for block in self._stage_modules[stage]:
            x = block(x)
        return x

    def forward_stages(self, x: Tensor, start: int = 0, end: int | None = None) -> Tensor:
        """Run stages ``start .. end-1`` (``end=None``: to the last stage).

        Args:
            x: ``(N, 3, H, W)`` images when ``start == 0``, else the
                ``(N, C, H', W')`` output of stage ``start - 1``.

        Returns:
            The output of stage ``end - 1``.
        """
        end = self._check_range(start, end)
        self._check_input(x, start)
        for i in range(start, end):
            x = self._run_stage(x, i)
        return x

    def forward_taps(self, x: Tensor, indices: Iterable[int], start: int = 0) -> dict[int, Tensor]:
        """Run from stage ``start`` up to the deepest requested tap, no further.

        Returns:
            ``{stage_index: output}`` for every index in ``indices``.
        """
        wanted = sorted(set(indices))
        if not wanted or wanted[0] < start:
            raise ValueError(f"tap indices must be >= start={start}, got {wanted}")
        end = self._check_range(start, wanted[-1] + 1)
        self._check_input(x, start)
        taps: dict[int, Tensor] = {}
        for i in range(start, end):
            x = self._run_stage(x, i)
            if i in wanted:
                taps[i] = x
        return taps

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Returns the outputs of the stages in ``out_indices``, shallow to deep."""
        taps = self.forward_taps(x, self.out_indices)
        return tuple(taps[i] for i in self.out_indices)
