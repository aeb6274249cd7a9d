"""The MobileNetV3 trunk: typed block specs in, stages with feature metadata out.

The trunk is a flat list of blocks (``blocks``: stem, bottlenecks, last 1x1
conv) whose indices and parameter names match torchvision's
``mobilenet_v3_*().features``. A :class:`~mtmnv3.backbone.plan.StagePlan` groups the
blocks into stages; ``feature_info`` describes each stage (channels, stride,
MACs, params), and ``forward_stages`` runs any contiguous range of them.
"""

from __future__ import annotations

import copy
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn

from mtmnv3.backbone.complexity import module_macs, num_params
from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.pretrained import (
    PRETRAINED_TYPE,
    check_pretrained_cfgs,
    load_pretrained_trunk,
    read_state_dict,
    unwrap_state_dict,
)
from mtmnv3.backbone.staged import StagedTrunk
from mtmnv3.core.layers import ConvBNAct, InvertedResidual, get_activation, make_divisible
from mtmnv3.core.registry import MODELS
from mtmnv3.core.specs import ARCH_SPECS, LAST_CONV_EXPANSION, STEM_CHANNELS, BlockSpec

__all__ = ["MobileNetV3Trunk", "SE_MODES", "TORCHVISION_PREFIX"]

#: SE placement modes: as in the paper's table, none, only in blocks at output
#: stride >= 16 where the paper has SE ('late'), or in every bottleneck.
SE_MODES = ("paper", "none", "late", "all")
#: Output stride from which SE blocks are kept by ``se='late'``.
LATE_SE_MIN_STRIDE = 16
#: torchvision keeps the trunk under this prefix; the classifier under 'classifier.'.
TORCHVISION_PREFIX = "features."
_TORCHVISION_HEAD_PREFIX = "classifier."


@MODELS.register_module()
class MobileNetV3Trunk(StagedTrunk):
    """MobileNetV3-Large/-Small trunk with a stage API.

    Args:
        arch: ``'large'`` or ``'small'`` (the paper's Tables 1 and 2).
        width_mult: channel width multiplier (channels rounded to multiples of 8).
        se: SE placement: ``'paper'``, ``'none'``, ``'late'``, ``'all'``, a bool
            (True = ``'paper'``), or a sequence of block indices (1-based
            bottleneck numbering, i.e. trunk block indices) that get SE.
            Defaults to ``'paper'`` (``'none'`` when ``minimalistic``).
        activation: what replaces the paper's hard-swish positions (stem,
            'HS' blocks, last conv): ``'hswish'``, ``'relu6'`` or ``'relu'``.
            The paper's 'RE' blocks stay ReLU. Defaults to ``'hswish'``
            (``'relu'`` when ``minimalistic``).
        minimalistic: no SE, no hard-swish, 3x3 depthwise kernels everywhere.
        out_indices: stages whose outputs ``forward`` returns (default: all).
        frozen_stages: stages ``0..frozen_stages`` are frozen (eval mode, no
            gradients); -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode while training.
        with_cp: gradient checkpointing per block while training.
        bn_eps: BatchNorm eps (torchvision/TF default 1e-3).
        bn_momentum: BatchNorm momentum (torchvision default 0.01).
        zero_init_residual: start the last BatchNorm of every residual block
            at zero, so each residual block starts as the identity (Goyal et
            al. 2017, "Accurate, Large Minibatch SGD"). On the built-in data
            it sped up a short single-object run (800 iterations) and made
            no measurable difference to a full 4800-iteration run.
        stage_plan: a :class:`StagePlan`, its dict, or a path to its JSON;
            default: a new stage wherever the stride changes.
        reference_size: input size (square) at which ``feature_info`` MACs are given.
        input_norm: input standardisation before the stem, run as part of stage 0:
            ``None`` (default), ``'per_image'``, ``'per_image_global'`` or
            ``'learned'`` (see :mod:`mtmnv3.backbone.input_norm`).
        init_cfg: mmengine init config. ``dict(type='Pretrained', checkpoint=PATH)``
            loads a torchvision ``mobilenet_v3_{large,small}`` state dict (ImageNet
            weights), a multi-task checkpoint or the trunk's own weights when
            ``init_weights`` runs (the Runner calls it before training); optional
            ``prefix``, ``strict``, ``min_loaded``, ``map_location``
            (see :func:`mtmnv3.backbone.pretrained.load_pretrained_trunk`). It logs
            how many trunk tensors loaded and fails when too few do.
    """

    #: ``strict`` of a Pretrained ``init_cfg`` that does not set it: False loads
    #: when at least ``min_loaded`` (95 %) of the trunk's tensors match.
    pretrained_strict_default = False

    def __init__(
        self,
        arch: str = "large",
        width_mult: float = 1.0,
        se: str | bool | Sequence[int] | None = None,
        activation: str | None = None,
        minimalistic: bool = False,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        zero_init_residual: bool = False,
        stage_plan: StagePlan | Mapping[str, Any] | str | os.PathLike | None = None,
        reference_size: int = 224,
        input_norm: str | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        check_pretrained_cfgs(init_cfg)
        super().__init__(init_cfg=init_cfg)
        self._init_input_norm(input_norm)
        if arch not in ARCH_SPECS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCH_SPECS)}")
        if not (isinstance(width_mult, (int, float)) and width_mult > 0):
            raise ValueError(f"width_mult must be a positive number, got {width_mult!r}")
        if minimalistic and se not in (None, False, "none"):
            raise ValueError(f"minimalistic trunks have no SE, got se={se!r}")
        if bn_eps <= 0 or not 0 <= bn_momentum <= 1:
            raise ValueError(f"need bn_eps > 0 and 0 <= bn_momentum <= 1, got {bn_eps}, {bn_momentum}")
        self.arch = arch
        self.trunk_label = arch
        self.width_mult = float(width_mult)
        self.minimalistic = bool(minimalistic)
        self.activation = activation or ("relu" if minimalistic else "hswish")
        hs_act = get_activation(self.activation)
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.reference_size = reference_size
        self.zero_init_residual = bool(zero_init_residual)

        specs = ARCH_SPECS[arch]
        if minimalistic:
            specs = tuple(s.minimalistic() for s in specs)
        self.block_specs: tuple[BlockSpec, ...] = specs
        se_flags = self._resolve_se(se if se is not None else ("none" if minimalistic else "paper"), specs)
        self.se_blocks = tuple(i + 1 for i, f in enumerate(se_flags) if f)

        norm = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        adjust = partial(_scale_channels, width_mult=self.width_mult)
        blocks: list[nn.Module] = []
        strides: list[int] = []
        in_ch = adjust(STEM_CHANNELS)
        blocks.append(ConvBNAct(3, in_ch, 3, stride=2, activation=hs_act, norm_layer=norm))
        strides.append(2)
        for spec, use_se in zip(specs, se_flags):
            out_ch = adjust(spec.out)
            act = hs_act if spec.use_hs else nn.ReLU
            blocks.append(
                InvertedResidual(
                    in_ch,
                    adjust(spec.expanded),
                    out_ch,
                    spec.kernel,
                    spec.stride,
                    act,
                    use_se,
                    norm,
                    se_slot=spec.use_se,  # an SE the variant removed keeps its slot (stock layer names)
                )
            )
            strides.append(spec.stride)
            in_ch = out_ch
        blocks.append(ConvBNAct(in_ch, LAST_CONV_EXPANSION * in_ch, 1, activation=hs_act, norm_layer=norm))
        strides.append(1)
        self.blocks = nn.ModuleList(blocks)
        self.block_strides = tuple(strides)
        self.block_info = self._describe_blocks(reference_size)

        self.stage_plan = self._resolve_plan(stage_plan)
        self.feature_info = self._describe_stages()
        self._stage_modules = self._group_stage_modules()
        self.out_indices = self._resolve_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"frozen_stages must be an int in [-1, {self.num_stages - 1}], got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        self._init_weights()
        self._freeze_stages()

    # ---- construction helpers ----------------------------------------------
    @staticmethod
    def _resolve_se(se: str | bool | Sequence[int], specs: Sequence[BlockSpec]) -> list[bool]:
        if se is True:
            se = "paper"
        elif se is False:
            se = "none"
        if isinstance(se, str):
            if se not in SE_MODES:
                raise ValueError(
                    f"unknown se mode {se!r}; expected one of {SE_MODES}, a bool or block indices"
                )
            flags, stride = [], 2
            for spec in specs:
                stride *= spec.stride
                flags.append(
                    {
                        "paper": spec.use_se,
                        "none": False,
                        "all": True,
                        "late": spec.use_se and stride >= LATE_SE_MIN_STRIDE,
                    }[se]
                )
            return flags
        indices = list(se)
        bad = [i for i in indices if not isinstance(i, int) or not 1 <= i <= len(specs)]
        if bad:
            raise ValueError(f"se block indices must lie in 1..{len(specs)} (the bottlenecks), got {bad}")
        return [i + 1 in indices for i in range(len(specs))]

    def _describe_blocks(self, size: int) -> list[dict[str, Any]]:
        info, h, w, stride = [], size, size, 1
        for i, block in enumerate(self.blocks):
            macs, h, w = module_macs(block, h, w)
            stride *= self.block_strides[i]
            if i == 0:
                name, spec = "stem", None
            elif i == len(self.blocks) - 1:
                name, spec = "last_conv", None
            else:
                name, spec = f"bneck{i}", self.block_specs[i - 1]
            info.append(
                dict(
                    index=i,
                    name=name,
                    channels=block.out_channels,
                    stride=stride,
                    macs=macs,
                    params=num_params(block),
                    kernel=spec.kernel if spec else (3 if i == 0 else 1),
                    se=i in self.se_blocks,
                    activation=(self.activation if (spec is None or spec.use_hs) else "relu"),
                )
            )
        return info

    def _init_weights(self) -> None:
        # torchvision's MobileNetV3 initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, InvertedResidual) and m.use_res_connect:
                    nn.init.zeros_(m.block[-1][1].weight)  # the projection's BatchNorm

    def init_weights(self) -> None:
        """Run mmengine's ``init_cfg`` initialisers, then load ``Pretrained`` entries
        with :func:`~mtmnv3.backbone.pretrained.load_pretrained_trunk` (mmengine's own
        loader would silently load nothing from a torchvision file)."""
        if self._is_init:
            return
        cfgs = check_pretrained_cfgs(self.init_cfg)
        pretrained = [c for c in cfgs if c["type"] == PRETRAINED_TYPE]
        others = [c for c in cfgs if c["type"] != PRETRAINED_TYPE]
        # mmengine logs every parameter's init info at the end of the top-level
        # init_weights; when that is this trunk, set the record up here so the
        # log comes after the pretrained load.
        top_level = bool(pretrained) and not hasattr(self, "_params_init_info")
        if top_level:
            info: dict = defaultdict(dict)
            for param in self.parameters():
                info[param]["init_info"] = (
                    f"The value is the same before and after calling `init_weights` of {type(self).__name__} "
                )
                info[param]["tmp_mean_value"] = param.data.mean().cpu()
            for module in self.modules():
                module._params_init_info = info
        saved = self.init_cfg
        self.init_cfg = copy.deepcopy(others) or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved
        for cfg in pretrained:
            report = load_pretrained_trunk(
                self,
                cfg["checkpoint"],
                prefix=cfg.get("prefix"),
                map_location=cfg.get("map_location", "cpu"),
                strict=cfg.get("strict", self.pretrained_strict_default),
                **({"min_loaded": cfg["min_loaded"]} if "min_loaded" in cfg else {}),
            )
            if hasattr(self, "_params_init_info"):
                from mmengine.model.weight_init import update_init_info

                update_init_info(
                    self,
                    init_info=f"Pretrained: {len(report.loaded)}/{report.total} tensors from {cfg['checkpoint']}",
                )
        self._is_init = True
        if top_level:
            self._dump_init_info()
            for module in self.modules():
                del module._params_init_info

    # ---- public API -----------------------------------------------------------
    def stage_macs(self, height: int, width: int) -> list[int]:
        """Per-stage MACs for an input of ``height x width`` (feature_info has them at
        ``reference_size``)."""
        per_block, h, w = [], height, width
        for block in self.blocks:
            macs, h, w = module_macs(block, h, w)
            per_block.append(macs)
        stages = [sum(per_block[a:b]) for a, b in self.stage_plan.stages]
        stages[0] += self.input_norm_macs(height, width)
        return stages

    # ---- torchvision interop ---------------------------------------------------
    @classmethod
    def from_torchvision(
        cls,
        path_or_state_dict: str | os.PathLike | Mapping[str, Tensor],
        arch: str = "large",
        strict: bool = True,
        **kwargs: Any,
    ) -> MobileNetV3Trunk:
        """Build a trunk and load a torchvision ``mobilenet_v3_{arch}`` state dict.

        Args:
            path_or_state_dict: a state dict, or a file saved with ``torch.save``
                (loaded with ``weights_only=True``).
            arch: ``'large'`` or ``'small'``.
            strict: raise on missing or unexpected trunk keys.
            **kwargs: other trunk arguments (out_indices, frozen_stages, ...).
        """
        trunk = cls(arch=arch, **kwargs)
        trunk.load_torchvision_state_dict(path_or_state_dict, strict=strict)
        return trunk

    def load_torchvision_state_dict(
        self, path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], strict: bool = True
    ) -> None:
        """Load torchvision MobileNetV3 weights (``features.*``; ``classifier.*`` is ignored).

        ``strict`` concerns the blocks: an ``input_norm`` module's parameters, which
        torchvision's model does not have, keep their initial values.

        Raises:
            FileNotFoundError: the file does not exist.
            KeyError: (strict) keys are missing or unexpected; the message names them.
            ValueError: a tensor's shape differs from the trunk's (another arch or width).
        """
        state = _load_state_dict(path_or_state_dict)
        mapped, unexpected = {}, []
        for key, value in state.items():
            if key.startswith(TORCHVISION_PREFIX):
                mapped["blocks." + key[len(TORCHVISION_PREFIX) :]] = value
            elif not key.startswith(_TORCHVISION_HEAD_PREFIX):
                unexpected.append(key)
        own = {k: v for k, v in self.state_dict().items() if k.startswith("blocks.")}
        unexpected += [TORCHVISION_PREFIX + k[len("blocks.") :] for k in mapped if k not in own]
        missing = [TORCHVISION_PREFIX + k[len("blocks.") :] for k in own if k not in mapped]
        if strict and (missing or unexpected):
            raise KeyError(
                f"torchvision state dict does not match this {self.arch} trunk: "
                f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)}), "
                f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})"
            )
        mismatched = [
            f"{k}: checkpoint {tuple(v.shape)} vs trunk {tuple(own[k].shape)}"
            for k, v in mapped.items()
            if k in own and v.shape != own[k].shape
        ]
        if mismatched:
            raise ValueError(
                f"shape mismatch loading torchvision weights into a {self.arch} trunk "
                f"(width_mult={self.width_mult}): {mismatched[:5]}"
            )
        # every block key was checked above; strict=False leaves input_norm_module's as they are
        self.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)

    def torchvision_state_dict(self) -> dict[str, Tensor]:
        """This trunk's weights under torchvision's ``features.*`` names."""
        return {
            TORCHVISION_PREFIX + k[len("blocks.") :]: v
            for k, v in self.state_dict().items()
            if k.startswith("blocks.")
        }


def _scale_channels(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult, 8)


def _load_state_dict(obj: str | os.PathLike | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    if isinstance(obj, (str, os.PathLike)):
        return read_state_dict(obj)
    return unwrap_state_dict(obj, "state dict")
