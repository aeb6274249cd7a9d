"""MMDetection 3.x adapter: the trunk as an mmdet backbone.

Pull it into an mmdet config with::

    custom_imports = dict(imports=['mtmnv3.backbone.mmdet_adapter'], allow_failed_imports=False)
    model = dict(backbone=dict(type='MobileNetV3Trunk', arch='large', out_indices=(2, 3, 4)))

Importing this module registers :class:`MMDetMobileNetV3Trunk` in mmdet's
``MODELS`` registry under the name ``MobileNetV3Trunk``. It takes the same
arguments as :class:`mtmnv3.MobileNetV3Trunk`, publishes the same
``feature_info`` and returns a tuple of the ``out_indices`` stage outputs.

Pretrained weights load through mmengine's usual
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``, but
stricter than mmengine's ``PretrainedInit`` (which asserts on a prefix that
matches nothing, an assert that vanishes under ``python -O``, and only logs
missing or mis-shaped keys): a prefix that selects no key, missing trunk
keys, unexpected keys and shape mismatches raise with a message naming them.
Typical prefixes: ``'trunk'`` for the package's multi-task checkpoints,
``'backbone'`` for an mmdet detector trained with this trunk, and
``'features'`` for a torchvision ``mobilenet_v3_*`` state dict.

The core package never imports this module, so it works without mmdet.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Mapping
from typing import Any

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor

from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.checkpoint import allow_mmengine_checkpoint_globals

try:
    from mmdet.registry import MODELS as MMDET_MODELS
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mtmnv3.backbone.mmdet_adapter needs MMDetection 3.x with a compiled mmcv: install it with "
        "`make mmdet` (or tools/install_mmdet.sh), which builds mmcv 2.1.0 for this torch"
    ) from exc

__all__ = ["MMDetMobileNetV3Trunk", "load_trunk_weights", "select_prefix"]

# Runner checkpoints (mmdet runs included, once this module is imported through
# ``custom_imports``) are written and read with torch's weights-only loading:
# plain data classes are allow-listed and mmengine's HistoryBuffer no longer
# pickles functions (the package's checkpoint policy, see mtmnv3.core.checkpoint).
allow_mmengine_checkpoint_globals()

#: ``init_cfg`` type handled by the strict loader below.
PRETRAINED_TYPE = "Pretrained"
#: Keys an ``init_cfg=dict(type='Pretrained', ...)`` may carry.
PRETRAINED_KEYS = frozenset({"type", "checkpoint", "prefix", "map_location", "strict"})
#: Prefix that distributed wrappers (DDP) put in front of every key.
_DDP_PREFIX = "module."
#: How many offending keys an error message lists before "...".
_MAX_KEYS_SHOWN = 8


def _show(keys: list[str]) -> str:
    more = f" ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"{keys[:_MAX_KEYS_SHOWN]}{more}"


def _read_state_dict(checkpoint: str | os.PathLike, map_location: str | None) -> dict[str, Tensor]:
    filename = os.fspath(checkpoint)
    if "://" not in filename and not os.path.isfile(os.path.expanduser(filename)):
        raise FileNotFoundError(f"pretrained checkpoint not found: {filename!r}")
    try:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger="silent")
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln] or [
            "see the cause"
        ]
        raise ValueError(
            f"checkpoint {filename!r} holds pickled objects that torch's weights-only loading refuses "
            f"({lines[0][:160]}); re-save just its weights, e.g. "
            "torch.save({'state_dict': ckpt['state_dict']}, path), from a trusted copy"
        ) from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(state, Mapping) or not state:
        raise TypeError(
            f"checkpoint {filename!r} holds no state dict (got {type(state).__name__}); expected a "
            "dict of tensors or a dict with a 'state_dict' entry"
        )
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if all(k.startswith(_DDP_PREFIX) for k in tensors):
        tensors = {k[len(_DDP_PREFIX) :]: v for k, v in tensors.items()}
    return tensors


def select_prefix(
    state_dict: Mapping[str, Tensor], prefix: str | None, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """The entries under ``prefix`` (a module path such as ``'trunk'``), with it removed.

    A torchvision layout (``features.<i>...`` selected by ``prefix='features'``)
    is mapped to the trunk's ``blocks.<i>...`` names.

    Raises:
        ValueError: the prefix matches no key; the message lists the prefixes the
            checkpoint does have.
    """
    if prefix is None or prefix.strip(".") == "":
        selected = dict(state_dict)
    else:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
        head = prefix.rstrip(".") + "."
        selected = {k[len(head) :]: v for k, v in state_dict.items() if k.startswith(head)}
        if not selected:
            tops = sorted({k.split(".", 1)[0] for k in state_dict})
            raise ValueError(
                f"prefix {prefix!r} matches no key in {source}; its keys start with {_show(tops)} "
                f"(e.g. prefix='trunk' for a multi-task checkpoint, 'backbone' for an mmdet detector)"
            )
    if selected and all(k.split(".", 1)[0].isdigit() for k in selected):
        selected = {f"blocks.{k}": v for k, v in selected.items()}  # torchvision `features.*`
    return selected


def load_trunk_weights(
    trunk: MobileNetV3Trunk,
    checkpoint: str | os.PathLike,
    prefix: str | None = None,
    map_location: str | None = "cpu",
    strict: bool = True,
) -> None:
    """Load trunk weights from a checkpoint file, strictly by default.

    Args:
        trunk: the trunk to load into.
        checkpoint: a path or URL mmengine's ``CheckpointLoader`` understands; a
            plain state dict or a dict with ``'state_dict'`` (mmengine Runner
            checkpoints included).
        prefix: module path of the trunk inside the checkpoint (``'trunk'``,
            ``'backbone'``, ``'features'``); ``None``: keys are the trunk's own.
        map_location: passed to ``torch.load``.
        strict: raise on missing or unexpected keys (shape mismatches always raise).

    Raises:
        FileNotFoundError: the checkpoint file does not exist.
        ValueError: the prefix matches nothing, keys are missing or unexpected,
            or tensor shapes differ (another arch, width or SE setting).
    """
    source = f"checkpoint {os.fspath(checkpoint)!r}"
    selected = select_prefix(_read_state_dict(checkpoint, map_location), prefix, source)
    own = trunk.state_dict()
    missing = [k for k in own if k not in selected]
    unexpected = [k for k in selected if k not in own]
    mismatched = [
        f"{k}: {tuple(v.shape)} in checkpoint vs {tuple(own[k].shape)} in trunk"
        for k, v in selected.items()
        if k in own and v.shape != own[k].shape
    ]
    where = f"{source} (prefix={prefix!r}) into a {trunk.arch} trunk (width_mult={trunk.width_mult})"
    if mismatched:
        raise ValueError(f"shape mismatch loading {where}: {_show(mismatched)}")
    if strict and (missing or unexpected):
        raise ValueError(
            f"checkpoint keys do not match loading {where}: missing {_show(missing)}, "
            f"unexpected {_show(unexpected)}; check the prefix and the trunk arguments"
        )
    trunk.load_state_dict({k: v for k, v in selected.items() if k in own}, strict=strict)
    print_log(f"loaded {len(own) - len(missing)} trunk tensors from {where}", logger="current")


@MMDET_MODELS.register_module(name="MobileNetV3Trunk")
class MMDetMobileNetV3Trunk(MobileNetV3Trunk):
    """:class:`mtmnv3.MobileNetV3Trunk` as an mmdet backbone (same arguments).

    ``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix='trunk')`` loads
    the trunk strictly from a checkpoint (see :func:`load_trunk_weights`; an
    optional ``strict=False`` tolerates missing or unexpected keys). Other
    ``init_cfg`` types go to mmengine's initialisers as usual.
    """

    def __init__(self, *args: Any, init_cfg: dict | list | None = None, **kwargs: Any) -> None:
        for cfg in _as_list(init_cfg):
            if not isinstance(cfg, Mapping) or "type" not in cfg:
                raise TypeError(f"init_cfg entries must be dicts with a 'type', got {cfg!r}")
            if cfg["type"] == PRETRAINED_TYPE:
                unknown = set(cfg) - PRETRAINED_KEYS
                if unknown or not cfg.get("checkpoint"):
                    raise ValueError(
                        f"init_cfg {dict(cfg)!r}: a Pretrained init_cfg needs 'checkpoint' and may set "
                        f"{sorted(PRETRAINED_KEYS - {'type', 'checkpoint'})}; unknown keys {sorted(unknown)}"
                    )
        super().__init__(*args, init_cfg=init_cfg, **kwargs)

    def init_weights(self) -> None:
        """Run non-pretrained ``init_cfg`` entries, then load pretrained weights strictly."""
        if self._is_init:
            return
        cfgs = _as_list(self.init_cfg)
        pretrained = [c for c in cfgs if c["type"] == PRETRAINED_TYPE]
        others = [c for c in cfgs if c["type"] != PRETRAINED_TYPE]
        saved = self.init_cfg
        self.init_cfg = copy.deepcopy(others) or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved
        for cfg in pretrained:
            load_trunk_weights(
                self,
                cfg["checkpoint"],
                prefix=cfg.get("prefix"),
                map_location=cfg.get("map_location", "cpu"),
                strict=cfg.get("strict", True),
            )
            if hasattr(self, "_params_init_info"):
                from mmengine.model.weight_init import update_init_info

                update_init_info(self, init_info=f"Pretrained: loaded from {cfg['checkpoint']}")
        self._is_init = True


def _as_list(init_cfg: dict | list | None) -> list:
    if init_cfg is None:
        return []
    return list(init_cfg) if isinstance(init_cfg, (list, tuple)) else [init_cfg]
