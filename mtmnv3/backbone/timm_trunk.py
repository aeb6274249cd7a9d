"""Successor trunks from timm behind the MobileNetV3 trunk contract.

:class:`TimmTrunk` wraps a timm image model (MobileNetV4, MobileViT, FBNet,
EfficientNet-Lite, MobileNetV2, GhostNet, RepViT, ...) so that the neck, the
heads, the multi-task model, stage plans and the mmdet adapter use it like
:class:`~mtmnv3.backbone.trunk.MobileNetV3Trunk`: ``feature_info`` (per stage:
name, channels, stride, MACs, params), ``forward_stages``, ``forward_taps``,
``out_indices``, ``frozen_stages``, ``norm_eval``, ``stage_plan``,
``reference_size`` and ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``.

How a timm model becomes a trunk:

* The model is built with ``pretrained=False`` (nothing is downloaded; weights
  come from a local file through ``init_cfg``) and without its classifier.
* Its top-level modules, with ``nn.Sequential`` containers opened two levels
  deep (timm's stages and their blocks), form the flat list ``blocks``, run one
  after another. The list ends at the deepest of timm's own ``feature_info``
  taps at stride <= 32; what follows (the classifier's 1x1 conv, pooling, the
  classifier) is dropped.
* Once per process and model, a 64 x 64 pass checks that running ``blocks`` in
  sequence gives timm's own outputs at its taps, and a pass at
  ``reference_size`` gives every block's channels, stride and MACs.
* The default stage plan starts a new stage wherever the stride changes, as
  for MobileNetV3. The stages must form a pyramid that halves the resolution
  from one stage to the next and ends at stride 32 (the first stage at stride
  2 or 4): the neck taps strides 8, 16 and 32.

A model that cannot give these stages is refused with the reason: no
``feature_info``, taps that are not on a sequential path of its modules, a
forward that is not the sequence of its modules, or another stride layout
(a plain ViT stays at stride 16). :data:`SUCCESSOR_TRUNKS` are the tested
names; the parameters are stored under ``model.`` with timm's own names, so a
timm state dict loads as it is.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from mtmnv3.backbone.complexity import num_params, traced_block_macs
from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.pretrained import (
    MIN_LOADED_FRACTION,
    PRETRAINED_TYPE,
    LoadReport,
    check_pretrained_cfgs,
    load_pretrained_trunk,
    read_state_dict,
    select_prefix,
    unwrap_state_dict,
)
from mtmnv3.backbone.staged import StagedTrunk
from mtmnv3.core.registry import MODELS

__all__ = [
    "CROSS_CHECK_TRUNKS",
    "SUCCESSOR_TRUNKS",
    "TESTED_TIMM_TRUNKS",
    "TIMM_PREFIX",
    "TimmTrunk",
    "TrunkContractError",
]

#: timm models tested behind the trunk contract (tests/backbone/test_trunk_contract.py).
SUCCESSOR_TRUNKS = (
    "mobilenetv4_conv_small",
    "mobilenetv4_conv_medium",
    "mobilevit_xxs",
    "fbnetc_100",
    "efficientnet_lite0",
    "mobilenetv2_100",
    "ghostnet_100",
    "repvit_m0_9",
)
#: timm's MobileNetV3-Small: the same stages as ``MobileNetV3Trunk(arch='small')``,
#: a cross-check of the adapter against the package's own trunk.
CROSS_CHECK_TRUNKS = ("mobilenetv3_small_100",)
TESTED_TIMM_TRUNKS = SUCCESSOR_TRUNKS + CROSS_CHECK_TRUNKS
#: Named variants of the timm trunks are ``'timm_' + name`` (``mtmnv3.backbone.variants``).
TIMM_PREFIX = "timm_"
#: Deepest stride a trunk goes to, and the strides the neck taps.
MAX_STRIDE = 32
NECK_STRIDES = (8, 16, 32)
#: timm.create_model arguments the trunk sets itself.
_RESERVED_KWARGS = frozenset(
    {"pretrained", "features_only", "out_indices", "num_classes", "pretrained_cfg", "pretrained_cfg_overlay"}
)
#: How many levels of nn.Sequential containers are opened into blocks (timm: stages, then blocks).
_FLATTEN_DEPTH = 2
#: Input size of the check that the blocks in sequence give timm's outputs.
_CHECK_SIZE = 64
#: Module paths of the trunk tried, in this order, when a Pretrained init_cfg sets no prefix:
#: '' (a timm state dict or the trunk's own), a multi-task checkpoint, an mmdet detector.
_AUTO_PREFIXES = ("", "trunk", "backbone")
#: The timm model's attribute in the trunk (its parameters are 'model.<timm name>').
_MODEL_ATTR = "model"
#: The trunk's attributes that hold parameters: a state dict whose keys all start with
#: one of them is the trunk's own (the input normalisation's only when it has any).
_OWN_ATTRS = (_MODEL_ATTR, "input_norm_module")

# (name, model kwargs, reference size) -> checked block layout; filled once per process.
_LAYOUTS: dict[tuple[str, str, int], dict[str, Any]] = {}


class TrunkContractError(ValueError):
    """A timm model that cannot serve as a trunk (the message says why)."""


def _timm():
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is an install requirement
        raise ImportError("TimmTrunk needs timm: pip install -c requirements/constraints.txt timm") from exc
    return timm


def _unknown_name_message(name: str) -> str:
    timm = _timm()
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return (
        f"unknown timm model {name!r}; tested names (SUCCESSOR_TRUNKS, variants "
        f"{TIMM_PREFIX}<name>): {list(TESTED_TIMM_TRUNKS)}"
        + (f"; close timm names: {close}" if close else "")
        + " (other timm models load when their stages fit the trunk contract: timm feature_info, "
        "a sequential forward and a stride-2 pyramid to stride 32)"
    )


def _flatten(module: nn.Module, prefix: str = "", depth: int = _FLATTEN_DEPTH) -> list[tuple[str, nn.Module]]:
    """Children in order, ``nn.Sequential`` containers (with the stock forward) opened ``depth`` levels."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = prefix + name
        if (
            depth > 0
            and isinstance(child, nn.Sequential)
            and type(child).forward is nn.Sequential.forward
            and len(child)
        ):
            out += _flatten(child, path + ".", depth - 1)
        else:
            out.append((path, child))
    return out


def _within(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def _tap_blocks(name: str, names: Sequence[str], taps: Sequence[str]) -> list[int]:
    """Index of the last block of each timm tap module."""
    indices = []
    for tap in taps:
        inside = [i for i, n in enumerate(names) if _within(n, tap)]
        if not inside:
            outer = [n for n in names if _within(tap, n)]
            where = (
                f"inside block {outer[0]!r}, not at a block boundary"
                if outer
                else "not on the sequential path of its top-level modules"
            )
            raise TrunkContractError(
                f"timm model {name!r} cannot be split into trunk stages: its feature tap {tap!r} is {where}"
            )
        indices.append(inside[-1])
    return indices


def _describe_model(name: str, model: nn.Module, reference_size: int) -> dict[str, Any]:
    """Check a fresh timm model against the contract; its block names, strides, channels and MACs."""
    info = getattr(model, "feature_info", None)
    if isinstance(info, Sequence) and not isinstance(info, str):
        taps = [dict(f) for f in info if isinstance(f, Mapping)]
    else:
        taps = []
    if not taps or not all({"module", "num_chs", "reduction"} <= set(f) for f in taps):
        raise TrunkContractError(
            f"timm model {name!r} publishes no feature_info (module, channels, reduction per tap), "
            "so its stages cannot be found"
        )
    taps = [f for f in taps if f["reduction"] <= MAX_STRIDE]
    if not taps or max(f["reduction"] for f in taps) != MAX_STRIDE:
        raise TrunkContractError(
            f"timm model {name!r} does not reach stride {MAX_STRIDE}: its feature taps are at strides "
            f"{[f['reduction'] for f in info]}; the neck needs stages at strides {list(NECK_STRIDES)}"
        )
    flat = _flatten(model)
    names = [n for n, _ in flat]
    tap_index = _tap_blocks(name, names, [f["module"] for f in taps])
    last = max(tap_index)
    # The trunk ends with the container of the deepest tap (timm's `blocks` or `stages`):
    # timm taps some models (GhostNet) at the first block of their last stride.
    container = names[last].split(".", 1)[0]
    if container != names[last]:
        while last + 1 < len(names) and names[last + 1].split(".", 1)[0] == container:
            last += 1
        taps.append(dict(module=container))
        tap_index.append(last)
    blocks = [m for _, m in flat[: last + 1]]

    # The blocks in sequence must give timm's own outputs at its taps.
    x = torch.randn(1, 3, _CHECK_SIZE, _CHECK_SIZE, generator=torch.Generator().manual_seed(0))
    seen: dict[str, Tensor] = {}
    hooks = [
        model.get_submodule(f["module"]).register_forward_hook(
            lambda mod, inp, out, key=f["module"]: seen.__setitem__(key, out.detach().clone())
        )
        for f in taps
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                (model.forward_features if hasattr(model, "forward_features") else model)(x)
                y, ours = x, {}
                for i, block in enumerate(blocks):
                    y = block(y)
                    if not isinstance(y, Tensor) or y.dim() != 4:
                        raise TrunkContractError(
                            f"timm model {name!r}: block {names[i]!r} returns "
                            f"{type(y).__name__ if not isinstance(y, Tensor) else f'a {y.dim()}-D tensor'}, "
                            "not an N x C x H x W feature map"
                        )
                    ours[i] = y
            except TrunkContractError:
                raise
            except Exception as exc:
                raise TrunkContractError(
                    f"timm model {name!r} does not run as a sequence of its modules on a "
                    f"{_CHECK_SIZE}x{_CHECK_SIZE} input: {type(exc).__name__}: {str(exc)[:200]}"
                ) from exc
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for f, i in zip(taps, tap_index):
        got, want = ours[i], seen.get(f["module"])
        if want is None or got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            raise TrunkContractError(
                f"timm model {name!r}: running its modules in sequence does not give its own output at "
                f"{f['module']!r} (its forward does more than call them in order), so it cannot be split "
                "into stages"
            )

    traced = traced_block_macs(blocks, reference_size, reference_size)
    strides, channels, macs = [], [], []
    prev = 1
    for i, (m, shape) in enumerate(traced):
        total = 2 ** round(math.log2(reference_size / shape[-2]))
        if total % prev:
            raise TrunkContractError(
                f"timm model {name!r}: block {names[i]!r} upsamples (stride {prev} -> {total})"
            )
        strides.append(total // prev)
        channels.append(int(shape[1]))
        macs.append(int(m))
        prev = total
    # The stride plan's stages must form the pyramid the neck and heads read.
    plan = StagePlan.from_strides(strides)
    stage_strides = [math.prod(strides[:b]) for _, b in plan.stages]
    ok = stage_strides[0] in (2, 4) and stage_strides[-1] == MAX_STRIDE
    ok = ok and all(b == 2 * a for a, b in zip(stage_strides, stage_strides[1:]))
    if not ok:
        raise TrunkContractError(
            f"timm model {name!r} is not a stride-2 pyramid to stride {MAX_STRIDE}: a new stage "
            f"wherever the stride changes gives strides {stage_strides} (need the first at 2 or 4, "
            f"each next one 2x the last, the last at {MAX_STRIDE})"
        )
    return dict(
        names=tuple(names[: last + 1]), strides=tuple(strides), channels=tuple(channels), macs=tuple(macs)
    )


@MODELS.register_module()
class TimmTrunk(StagedTrunk):
    """A timm image model as a trunk with the stage API of ``MobileNetV3Trunk``.

    Args:
        name: timm model name (``timm.create_model``), e.g. ``'mobilenetv4_conv_small'``;
            :data:`SUCCESSOR_TRUNKS` are tested.
        model_kwargs: further ``timm.create_model`` arguments (``drop_path_rate``,
            ``drop_rate``, ...; not ``pretrained``, ``features_only``, ``num_classes``).
        out_indices: stages whose outputs ``forward`` returns (default: all).
        frozen_stages: stages ``0..frozen_stages`` are frozen (eval mode, no
            gradients); -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode while training.
        with_cp: gradient checkpointing per block while training.
        stage_plan: a :class:`StagePlan` over the trunk's ``blocks``, its dict, or a
            path to its JSON; default: a new stage wherever the stride changes.
        reference_size: input size (square) at which ``feature_info`` MACs are given.
        input_norm: input standardisation before the first block, run as part of
            stage 0: ``None`` (default), ``'per_image'``, ``'per_image_global'`` or
            ``'learned'`` (see :mod:`mtmnv3.backbone.input_norm`).
        init_cfg: mmengine init config. ``dict(type='Pretrained', checkpoint=PATH)``
            loads a timm state dict of this model (``torch.save(model.state_dict())``
            of ``timm.create_model(name)``; its classifier is ignored), the trunk's
            own weights, a multi-task checkpoint (``trunk.``) or an mmdet
            detector's (``backbone.``); optional ``prefix``, ``strict``,
            ``min_loaded``, ``map_location`` as for ``MobileNetV3Trunk``. Nothing
            is downloaded.

    Attributes:
        model: the timm model without its classifier (parameters under timm's names).
        blocks: the flat list of modules the stages run (not registered twice:
            they are ``model``'s own modules).
        block_info: per block: index, timm module name, type, channels, stride, MACs, params.
        feature_info: per stage: name, module, blocks, channels, stride, MACs, params.
    """

    #: ``strict`` of a Pretrained ``init_cfg`` that does not set it (see ``MobileNetV3Trunk``).
    pretrained_strict_default = False

    def __init__(
        self,
        name: str,
        model_kwargs: Mapping[str, Any] | None = None,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        stage_plan: StagePlan | Mapping[str, Any] | str | os.PathLike | None = None,
        reference_size: int = 224,
        input_norm: str | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        check_pretrained_cfgs(init_cfg)
        super().__init__(init_cfg=init_cfg)
        self._init_input_norm(input_norm)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a timm model name, got {name!r}")
        kwargs = dict(model_kwargs or {})
        reserved = sorted(set(kwargs) & _RESERVED_KWARGS)
        if reserved:
            raise ValueError(
                f"model_kwargs may not set {reserved}: the trunk builds timm models without pretrained "
                "downloads or classifier (load weights with init_cfg=dict(type='Pretrained', checkpoint=PATH))"
            )
        if not isinstance(reference_size, int) or reference_size < 64:
            raise ValueError(f"reference_size must be an int >= 64, got {reference_size!r}")
        timm = _timm()
        if not timm.is_model(name):
            raise ValueError(_unknown_name_message(name))
        try:
            model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except Exception as exc:
            raise ValueError(
                f"timm could not build {name!r} with {kwargs}: {type(exc).__name__}: {exc}"
            ) from exc
        self.name = name
        self.trunk_label = name
        self.arch = name
        self.width_mult = 1.0  # the named model's own width; the trunk scales nothing
        self.model_kwargs = kwargs
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.reference_size = reference_size

        key = (name, repr(sorted(kwargs.items())), reference_size)
        if key not in _LAYOUTS:
            _LAYOUTS[key] = _describe_model(name, model, reference_size)
        layout = _LAYOUTS[key]
        flat = dict(_flatten(model))
        kept = layout["names"]
        # Drop what follows the last tap (head conv, pooling, classifier); remember their
        # names so a timm state dict's head tensors are not counted as unexpected.
        self._dropped: tuple[str, ...] = tuple(n for n in flat if n not in kept)
        for path in self._dropped:
            parent, _, child = path.rpartition(".")
            del (model.get_submodule(parent) if parent else model)._modules[child]
        self.model = model
        self.blocks: list[nn.Module] = [flat[n] for n in kept]  # plain list: no second registration
        self.block_strides = layout["strides"]
        self.block_info = []
        stride = 1
        for i, (n, s, c, m) in enumerate(zip(kept, layout["strides"], layout["channels"], layout["macs"])):
            stride *= s
            block = self.blocks[i]
            self.block_info.append(
                dict(
                    index=i,
                    name=n,
                    type=type(block).__name__,
                    channels=c,
                    stride=stride,
                    macs=m,
                    params=num_params(block),
                )
            )
        self.stage_plan = self._resolve_plan(stage_plan)
        self.feature_info = self._describe_stages()
        self._stage_modules = self._group_stage_modules()
        self.out_indices = self._resolve_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"frozen_stages must be an int in [-1, {self.num_stages - 1}], got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    # ---- construction helpers ----------------------------------------------
    # ---- weights ---------------------------------------------------------------
    def _select_weights(
        self, state: Mapping[str, Tensor], prefix: str | None, source: str
    ) -> dict[str, Tensor]:
        """The file's trunk tensors under the trunk's own names (``model.<timm name>``)."""
        own = set(self.state_dict())

        def under(p: str) -> dict[str, Tensor]:
            head = p.strip(".")
            sel = (
                dict(state)
                if not head
                else {k[len(head) + 1 :]: v for k, v in state.items() if k.startswith(head + ".")}
            )
            if sel and all(k.split(".", 1)[0] in _OWN_ATTRS for k in sel):
                return sel  # the trunk's own layout
            return {
                f"{_MODEL_ATTR}.{k}": v
                for k, v in sel.items()
                if not any(_within(k, d) for d in self._dropped)  # timm's head: not the trunk's
            }

        if prefix is not None:
            select_prefix(state, prefix, source)  # raises, naming the file's prefixes, when nothing matches
            return under(prefix)
        best, hits = {}, 0
        for p in _AUTO_PREFIXES:
            sel = under(p)
            n = len(own.intersection(sel))
            if n > hits:
                best, hits = sel, n
        if not hits:
            tops = sorted({k.split(".", 1)[0] for k in state})[:8]
            raise ValueError(
                f"{source} holds no {self.name} weights: no key matches the trunk's (timm names, or under "
                f"{[p for p in _AUTO_PREFIXES if p]}); its keys start with {tops}; set init_cfg prefix=... "
                "to the trunk's module path"
            )
        return best

    def load_pretrained(
        self,
        checkpoint: str | os.PathLike | Mapping[str, Tensor],
        prefix: str | None = None,
        map_location: str | None = "cpu",
        strict: bool = False,
        min_loaded: float = MIN_LOADED_FRACTION,
    ) -> LoadReport:
        """Load a timm state dict of this model, the trunk's own weights, a multi-task
        checkpoint or an mmdet detector's (see :func:`load_pretrained_trunk` for
        ``strict`` and ``min_loaded``); logs how many tensors loaded.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is unreadable, holds no weights of this model,
                or too few (strict: not all) tensors match.
        """
        if isinstance(checkpoint, Mapping):
            state, source = unwrap_state_dict(checkpoint, "state dict"), "the state dict"
        else:
            source = f"checkpoint {os.fspath(checkpoint)!r}"
            state = read_state_dict(checkpoint, map_location)
        selected = self._select_weights(state, prefix, source)
        try:
            return load_pretrained_trunk(self, selected, prefix="", strict=strict, min_loaded=min_loaded)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    def init_weights(self) -> None:
        """Run mmengine's ``init_cfg`` initialisers, then load ``Pretrained`` entries
        with :meth:`load_pretrained` (timm's own initialisation stays otherwise)."""
        if self._is_init:
            return
        cfgs = check_pretrained_cfgs(self.init_cfg)
        pretrained = [c for c in cfgs if c["type"] == PRETRAINED_TYPE]
        others = [c for c in cfgs if c["type"] != PRETRAINED_TYPE]
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
            report = self.load_pretrained(
                cfg["checkpoint"],
                prefix=cfg.get("prefix"),
                map_location=cfg.get("map_location", "cpu"),
                strict=cfg.get("strict", self.pretrained_strict_default),
                **({"min_loaded": cfg["min_loaded"]} if "min_loaded" in cfg else {}),
            )
            print_log(f"{self.name}: weights from {cfg['checkpoint']}", logger="current")
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

    # ---- train mode --------------------------------------------------------------
    # ---- public API -----------------------------------------------------------
    def stage_macs(self, height: int, width: int) -> list[int]:
        """Per-stage MACs for an input of ``height x width`` (one traced pass; ``feature_info``
        has them at ``reference_size``)."""
        per_block = [m for m, _ in traced_block_macs(self.blocks, height, width)]
        stages = [sum(per_block[a:b]) for a, b in self.stage_plan.stages]
        stages[0] += self.input_norm_macs(height, width)
        return stages
