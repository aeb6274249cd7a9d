"""Pretrained trunk weights from a file, in the layouts users have; never a silent no-op.

``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` on the trunk (and on the
mmdet adapter) loads through :func:`load_pretrained_trunk`. Without a
``prefix`` the layout is recognised from the keys:

======================================  ==================================
torchvision ``mobilenet_v3_{large,small}``  ``features.<i>...`` (``classifier.*`` unused)
the trunk's own ``state_dict()``        ``blocks.<i>...``
a multi-task checkpoint                 ``trunk.blocks.<i>...``
an mmdet detector with this trunk       ``backbone.blocks.<i>...``
======================================  ==================================

The file may hold the state dict itself or wrap it under ``'state_dict'``
(mmengine checkpoints) or ``'model'`` (torchvision's reference training
scripts); DDP's ``module.`` prefix is removed. Files are read with
``torch.load(weights_only=True)``: a file holding pickled code, or a
truncated or corrupt file, raises ``ValueError`` naming it.

Every load logs how many of the trunk's tensors it set, out of how many.
By default it raises when fewer than :data:`MIN_LOADED_FRACTION` of them
load (another arch or width, the wrong prefix), naming the first keys that
did not match; ``strict=True`` asks for every tensor and no leftover key.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

__all__ = [
    "AUTO_PREFIXES",
    "MIN_LOADED_FRACTION",
    "PRETRAINED_KEYS",
    "PRETRAINED_TYPE",
    "LoadReport",
    "check_pretrained_cfgs",
    "load_pretrained_trunk",
    "read_state_dict",
    "select_prefix",
    "unwrap_state_dict",
]

#: ``init_cfg`` type loaded by :func:`load_pretrained_trunk`.
PRETRAINED_TYPE = "Pretrained"
#: Keys an ``init_cfg=dict(type='Pretrained', ...)`` may carry.
PRETRAINED_KEYS = frozenset({"type", "checkpoint", "prefix", "map_location", "strict", "min_loaded"})
#: Module paths of the trunk tried, in this order, when no prefix is given
#: ('' = the trunk's own names, 'features' = torchvision).
AUTO_PREFIXES = ("", "features", "trunk", "backbone")
#: A non-strict load fails when fewer of the trunk's tensors than this load.
MIN_LOADED_FRACTION = 0.95
#: Keys a checkpoint file may wrap its state dict under, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model")
#: Prefix that distributed wrappers (DDP) put in front of every key.
_DDP_PREFIX = "module."
#: How many keys a message lists before "...".
_MAX_KEYS_SHOWN = 8


def _show(keys: list[str]) -> str:
    more = f" ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"{keys[:_MAX_KEYS_SHOWN]}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def read_state_dict(checkpoint: str | os.PathLike, map_location: str | None = "cpu") -> dict[str, Tensor]:
    """Read a weights file (``torch.load(weights_only=True)``) and return its state dict.

    URLs go through mmengine's ``CheckpointLoader``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is truncated or corrupt, or holds pickled objects
            that weights-only loading refuses; the message names the file.
        TypeError: the file holds something other than a state dict.
    """
    filename = os.fspath(checkpoint)
    is_url = "://" in filename
    if not is_url:
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"weights file not found: {filename}")
    try:
        if is_url:
            from mmengine.runner.checkpoint import CheckpointLoader

            obj = CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger="silent")
        else:
            obj = torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        if not refused:
            raise ValueError(
                f"cannot read weights file {filename}: it is truncated or corrupt ({_first_line(exc)}); "
                "download or save it again"
            ) from exc
        raise ValueError(
            f"checkpoint {filename!r} holds pickled objects that torch's weights-only loading refuses "
            f"({refused[0][:160]}); re-save just its weights, e.g. "
            "torch.save({'state_dict': ckpt['state_dict']}, path), from a trusted copy "
            "(files are read with torch.load(weights_only=True))"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... on damaged files
        raise ValueError(
            f"cannot read weights file {filename}: it is truncated or corrupt ({_first_line(exc)}); "
            "download or save it again"
        ) from exc
    return unwrap_state_dict(obj, f"weights file {filename}")


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """The tensors of a state dict, itself or wrapped under ``'state_dict'`` or ``'model'``,
    with DDP's ``module.`` prefix removed.

    Raises:
        TypeError: ``obj`` holds no tensors.
    """
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)} if isinstance(obj, Mapping) else {}
    if not tensors:
        what = type(obj).__name__
        if isinstance(obj, Mapping):
            what += f" with keys {_show([str(k) for k in obj])}"
        raise TypeError(
            f"{source}: expected a state dict (str -> Tensor), e.g. torch.save(model.state_dict(), path), "
            f"or one under {' or '.join(repr(k) for k in _WRAPPER_KEYS)}; got a {what}"
        )
    if all(k.startswith(_DDP_PREFIX) for k in tensors):
        tensors = {k[len(_DDP_PREFIX) :]: v for k, v in tensors.items()}
    return tensors


def _under(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    head = prefix.strip(".")
    if not head:
        selected = dict(state)
    else:
        head += "."
        selected = {k[len(head) :]: v for k, v in state.items() if k.startswith(head)}
    if selected and all(k.split(".", 1)[0].isdigit() for k in selected):
        selected = {f"blocks.{k}": v for k, v in selected.items()}  # torchvision `features.*`
    return selected


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
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
    selected = _under(state_dict, prefix or "")
    if not selected:
        tops = sorted({k.split(".", 1)[0] for k in state_dict})
        raise ValueError(
            f"prefix {prefix!r} matches no key in {source}; its keys start with {_show(tops)} "
            f"(e.g. prefix='trunk' for a multi-task checkpoint, 'backbone' for an mmdet detector, "
            f"'features' for torchvision)"
        )
    return selected


def _auto_select(
    state: Mapping[str, Tensor], own: Iterable[str], source: str
) -> tuple[dict[str, Tensor], str]:
    own = set(own)
    best: tuple[int, dict[str, Tensor], str] = (0, {}, "")
    for prefix in AUTO_PREFIXES:
        selected = _under(state, prefix)
        hits = len(own.intersection(selected))
        if hits > best[0]:
            best = (hits, selected, prefix)
    if best[0] == 0:
        tops = sorted({k.split(".", 1)[0] for k in state})
        raise ValueError(
            f"{source} holds no MobileNetV3 trunk weights: no key matches the trunk's under any of the "
            f"prefixes {list(AUTO_PREFIXES)} (torchvision's 'features', a multi-task checkpoint's "
            f"'trunk', an mmdet detector's 'backbone'); its keys start with {_show(tops)}, e.g. "
            f"{_show(sorted(state)[:3])}; set init_cfg prefix=... to the trunk's module path"
        )
    return best[1], best[2]


@dataclass
class LoadReport:
    """What a pretrained load did (trunk parameter and buffer names)."""

    #: Tensors set from the file.
    loaded: list[str] = field(default_factory=list)
    #: The trunk's tensors in all.
    total: int = 0
    #: Trunk tensors the file does not have.
    missing: list[str] = field(default_factory=list)
    #: Trunk tensors whose shape differs in the file (``'key: file vs trunk'``).
    mismatched: list[str] = field(default_factory=list)
    #: File tensors (under the prefix) the trunk has no place for.
    unexpected: list[str] = field(default_factory=list)
    #: The prefix the trunk was found under.
    prefix: str = ""

    @property
    def fraction(self) -> float:
        return len(self.loaded) / self.total if self.total else 0.0


def load_pretrained_trunk(
    trunk: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, Tensor],
    prefix: str | None = None,
    map_location: str | None = "cpu",
    strict: bool = False,
    min_loaded: float = MIN_LOADED_FRACTION,
) -> LoadReport:
    """Load trunk weights from a file (or a state dict) and log how many loaded.

    Args:
        trunk: a :class:`~mtmnv3.backbone.trunk.MobileNetV3Trunk`.
        checkpoint: a weights file or a state dict (see the module docstring
            for the layouts and wrappers understood).
        prefix: module path of the trunk in the file (``'features'``,
            ``'trunk'``, ``'backbone'``); ``None``: recognised from the keys.
        map_location: passed to ``torch.load``.
        strict: every trunk tensor must load and no file tensor under the
            prefix may be left over.
        min_loaded: (not strict) the least fraction of the trunk's tensors
            that must load.

    Returns:
        A :class:`LoadReport`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable, the prefix matches nothing, or too
            few tensors match (another arch, width or SE setting); the message
            names the first keys that did not match.
    """
    if not 0.0 < float(min_loaded) <= 1.0:
        raise ValueError(f"min_loaded must be in (0, 1], got {min_loaded!r}")
    if isinstance(checkpoint, Mapping):
        state, source = unwrap_state_dict(checkpoint, "state dict"), "the state dict"
    else:
        source = f"checkpoint {os.fspath(checkpoint)!r}"
        state = read_state_dict(checkpoint, map_location)
    own = trunk.state_dict()
    if prefix is None:
        selected, used = _auto_select(state, own, source)
    else:
        selected, used = select_prefix(state, prefix, source), prefix
    report = LoadReport(total=len(own), prefix=used)
    report.missing = [k for k in own if k not in selected]
    report.unexpected = [k for k in selected if k not in own]
    report.mismatched = [
        f"{k}: {tuple(selected[k].shape)} in checkpoint vs {tuple(v.shape)} in trunk"
        for k, v in own.items()
        if k in selected and selected[k].shape != v.shape
    ]
    # what did not load, in the trunk's order: missing keys and shape mismatches
    not_loaded = [
        k
        if k not in selected
        else f"{k}: {tuple(selected[k].shape)} in checkpoint vs {tuple(v.shape)} in trunk"
        for k, v in own.items()
        if k not in selected or selected[k].shape != v.shape
    ]
    loadable = {k: v for k, v in selected.items() if k in own and v.shape == own[k].shape}
    report.loaded = list(loadable)
    arch = getattr(trunk, "arch", "?")
    width = getattr(trunk, "width_mult", "?")
    where = f"{source} (prefix={used!r}) into a {arch} trunk (width_mult={width})"
    hint = " (trunk blocks.<i> = torchvision features.<i>)" if used.strip(".") == "features" else ""
    if strict:
        if report.mismatched:
            raise ValueError(f"shape mismatch loading {where}: {_show(report.mismatched)}")
        if report.missing or report.unexpected:
            raise ValueError(
                f"checkpoint keys do not match loading {where}: missing {_show(report.missing)}, "
                f"unexpected {_show(report.unexpected)}{hint}; check the prefix and the trunk arguments"
            )
    elif report.fraction < min_loaded:
        raise ValueError(
            f"only {len(loadable)}/{report.total} trunk tensors ({report.fraction:.0%}) load from {where}, "
            f"fewer than the {min_loaded:.0%} required; first keys that did not match: "
            f"{_show(not_loaded)}, unused checkpoint keys "
            f"{_show(report.unexpected)}{hint}; is the file for another arch ('large'/'small'), "
            "width_mult or SE setting?"
        )
    trunk.load_state_dict(loadable, strict=False)
    msg = f"loaded {len(loadable)}/{report.total} trunk tensors from {where}"
    if report.missing or report.mismatched:
        msg += f"; not loaded: {_show(not_loaded)}"
    if report.unexpected:
        msg += f"; {len(report.unexpected)} checkpoint tensors unused: {_show(report.unexpected)}"
    print_log(msg, logger="current")
    return report


def check_pretrained_cfgs(init_cfg: dict | list | None) -> list[dict]:
    """The ``init_cfg`` entries as a list, each checked: a dict with a ``type``;
    a ``Pretrained`` one has a ``checkpoint`` and only :data:`PRETRAINED_KEYS`.

    Raises:
        TypeError: an entry is not a dict with a ``type``.
        ValueError: a Pretrained entry lacks ``checkpoint`` or has unknown keys.
    """
    if init_cfg is None:
        return []
    cfgs = list(init_cfg) if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for cfg in cfgs:
        if not isinstance(cfg, Mapping) or "type" not in cfg:
            raise TypeError(f"init_cfg entries must be dicts with a 'type', got {cfg!r}")
        if cfg["type"] == PRETRAINED_TYPE:
            unknown = set(cfg) - PRETRAINED_KEYS
            if unknown or not cfg.get("checkpoint"):
                raise ValueError(
                    f"init_cfg {dict(cfg)!r}: a Pretrained init_cfg needs 'checkpoint' and may set "
                    f"{sorted(PRETRAINED_KEYS - {'type', 'checkpoint'})}; unknown keys {sorted(unknown)}"
                )
    return cfgs
