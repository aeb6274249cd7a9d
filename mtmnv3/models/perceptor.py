"""MultiTaskPerceptor: one trunk, an optional shared neck, plug-in heads.

Training returns per-task losses; a batch may carry only some tasks' labels
(each head trains on the samples that have its labels). Prediction runs only
the active heads and only as deep into the trunk as they need, so a per-frame
budget can switch heads off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from torch import Tensor, nn

import mtmnv3.heads  # noqa: F401  (registers the heads)
from mtmnv3.core.registry import MODELS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.heads.base import CLASSIFICATION, DETECTION, EMBEDDING, heads_by_task
from mtmnv3.models.weighting import GradientWeighting, build_loss_weighting

__all__ = ["MultiTaskPerceptor", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Heads whose predictions others build on run first (embeddings are read at detections).
_PREDICT_ORDER = {DETECTION: 0, CLASSIFICATION: 1, EMBEDDING: 2}


@MODELS.register_module()
class MultiTaskPerceptor(BaseModel):
    """Shared MobileNetV3 trunk + neck + heads, as an mmengine model.

    Args:
        trunk: trunk config (e.g. ``dict(type='MobileNetV3Trunk', arch='small')``) or module.
        heads: ``{name: head config}``; names are free (e.g. ``cls``, ``det``, ``emb``), each
            head declares its task (see ``mtmnv3.heads.HEAD_TASKS``), one head per task.
        neck: neck config, built when any head reads the neck.
        task_weights: static loss weight per head name (default 1.0 each), applied
            to each task's loss before the loss-weighting method sees it.
        loss_weighting: task-loss balancing method config, e.g. ``dict(type='FAMO')``
            (registered in ``LOSS_WEIGHTINGS``; default ``EqualWeighting``). Its
            per-task weights (times ``task_weights``) are logged as ``weight_<task>``.
        data_preprocessor: mmengine data preprocessor config (default: ImageNet
            mean/std normalisation of RGB uint8 images, padding to 32).
        init_cfg: mmengine init config.
        channels_last: keep the conv weights and the input batch in
            channels-last (NHWC) memory: on x86 CPUs oneDNN runs MobileNetV3's
            depthwise and 1x1 convolutions faster that way
            (``benchmarks/train_throughput.py`` times the training step both
            ways). Results are the
            same up to float rounding; checkpoints load either way.
        frozen: parts kept fixed in training, by name: ``'trunk'``, ``'neck'``
            or head names. Their parameters get no gradient and they stay in
            eval mode (batch-norm statistics fixed); frozen heads' losses are
            not computed and their tasks leave the loss weighting. For
            training one head on a trained model while the others (and so,
            e.g., the detections) stay exactly as they were.
    """

    def __init__(
        self,
        trunk: dict | nn.Module,
        heads: Mapping[str, dict],
        neck: dict | None = None,
        task_weights: Mapping[str, float] | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
        loss_weighting: dict | None = None,
        channels_last: bool = False,
        frozen: Sequence[str] = (),
    ) -> None:
        # Build our parts in our registry scope even when another library (e.g. MMDetection)
        # has made its own scope the default in this process.
        with DefaultScope.overwrite_default_scope("mtmnv3"):
            if data_preprocessor is None:
                data_preprocessor = dict(
                    type="ImgDataPreprocessor", mean=IMAGENET_MEAN, std=IMAGENET_STD, pad_size_divisor=32
                )
            super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
            self.trunk = MODELS.build(trunk) if isinstance(trunk, dict) else trunk
            if not isinstance(heads, Mapping) or not heads:
                raise ValueError(f"heads must be a non-empty dict of name -> head config, got {heads!r}")
            head_classes = {name: _head_class(cfg, name) for name, cfg in heads.items()}
            self.neck = None
            if any(cls.uses_neck for cls in head_classes.values()):
                neck = neck or dict(type="FPNLite")
                self.neck = MODELS.build(neck, default_args=dict(feature_info=self.trunk.feature_info))
            self.heads = nn.ModuleDict()
            for name, cfg in heads.items():
                if head_classes[name].uses_neck:
                    default_args = dict(in_channels=self.neck.out_channels, strides=self.neck.strides)
                else:
                    default_args = dict(feature_info=self.trunk.feature_info)
                self.heads[name] = MODELS.build(cfg, default_args=default_args)
            self.task_heads: dict[str, str] = heads_by_task(self.heads)
            weights = dict(task_weights or {})
            unknown = sorted(set(weights) - set(self.heads))
            if unknown:
                raise ValueError(
                    f"task_weights names {unknown} that are not heads; heads are {list(self.heads)}"
                )
            self.task_weights = {name: float(weights.get(name, 1.0)) for name in self.heads}
            self.frozen = self._check_frozen(frozen)
            self.loss_weighting = build_loss_weighting(loss_weighting, self.trainable_heads)
            self.active_heads: tuple[str, ...] = tuple(self.heads)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        for part in self._frozen_modules():
            part.requires_grad_(False)
        self.train(self.training)

    def head_for(self, task: str) -> str:
        """The name of the head that declares ``task`` (one of ``mtmnv3.heads.HEAD_TASKS``).

        Raises:
            ValueError: no head declares ``task``; the message names the heads present.
        """
        return heads_by_task(self.heads, required=(task,))[task]

    # ---- frozen parts ----------------------------------------------------------------
    def _check_frozen(self, frozen: Sequence[str]) -> tuple[str, ...]:
        names = (frozen,) if isinstance(frozen, str) else tuple(frozen)
        allowed = ["trunk", *(["neck"] if self.neck is not None else []), *self.heads]
        bad = [n for n in names if n not in allowed]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"frozen must name distinct parts among {allowed}, got {list(names)}")
        if all(h in names for h in self.heads):
            raise ValueError(f"frozen {list(names)} leaves no head to train; heads are {list(self.heads)}")
        return names

    @property
    def trainable_heads(self) -> list[str]:
        """The heads that train (all but the frozen ones), in order."""
        return [n for n in self.heads if n not in self.frozen]

    def _frozen_modules(self) -> list[nn.Module]:
        parts = {"trunk": self.trunk, "neck": self.neck, **self.heads}
        return [parts[n] for n in getattr(self, "frozen", ())]

    def train(self, mode: bool = True) -> MultiTaskPerceptor:
        """Set the training mode; frozen parts stay in eval mode."""
        super().train(mode)
        for part in self._frozen_modules():
            part.eval()
        return self

        # ---- head selection ------------------------------------------------------------

    def set_active_heads(self, names: Iterable[str] | None) -> None:
        """Choose which heads ``predict`` runs (None: all)."""
        names = tuple(self.heads) if names is None else tuple(names)
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; heads are {list(self.heads)}")
        self.active_heads = names

    def required_taps(self, names: Iterable[str]) -> list[int]:
        """Trunk stages that the named heads (and the neck, if they use it) read."""
        taps: set[int] = set()
        for name in names:
            head = self.heads[name]
            taps.update(self.neck.taps if head.uses_neck else head.taps)
        return sorted(taps)

    # ---- forward ----------------------------------------------------------------------
    def head_outputs(self, inputs: Tensor, names: Sequence[str]) -> dict[str, Any]:
        """Raw outputs of the named heads, running the trunk only as deep as needed."""
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        feats = self.trunk.forward_taps(inputs, self.required_taps(names))
        neck_out = None
        if any(self.heads[n].uses_neck for n in names):
            neck_out = self.neck(feats)
        return {n: self.heads[n](neck_out if self.heads[n].uses_neck else feats) for n in names}

    def forward(
        self, inputs: Tensor, data_samples: list[MultiTaskDataSample] | None = None, mode: str = "tensor"
    ) -> Any:
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.head_outputs(inputs, self.active_heads)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def task_losses(
        self, inputs: Tensor, data_samples: Sequence[MultiTaskDataSample]
    ) -> dict[str, dict[str, Tensor]]:
        """Per trainable head: its named losses (computed on the samples that carry its labels)."""
        if data_samples is None:
            raise ValueError("training needs data_samples with labels")
        names = self.trainable_heads
        outputs = self.head_outputs(inputs, names)
        losses = {n: self.heads[n].loss(outputs[n], data_samples) for n in names}
        self._loss_keys = {n: tuple(v) for n, v in losses.items()}
        return losses

    def loss(self, inputs: Tensor, data_samples: Sequence[MultiTaskDataSample]) -> dict[str, Tensor]:
        flat: dict[str, Tensor] = {}
        for losses in self.task_losses(inputs, data_samples).values():
            flat.update(losses)
        return flat

    def task_totals(
        self, task_losses: dict[str, dict[str, Tensor]]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per task: its summed losses times its static weight; stops on a non-finite loss.

        Returns:
            ``({task: loss}, {loss name: detached value})``.

        Raises:
            FloatingPointError: naming the task, the loss and the iteration.
        """
        totals: dict[str, Tensor] = {}
        log_vars: dict[str, Tensor] = {}
        for name, losses in task_losses.items():
            task_total = sum(losses.values())
            for key, value in losses.items():
                if not torch.isfinite(value).all():
                    it = MessageHub.get_current_instance().get_info("iter", None)
                    raise FloatingPointError(
                        f"non-finite loss {key}={value.item()} in task '{name}' at iteration "
                        f"{'?' if it is None else it + 1}; lower the learning rate or check the labels"
                    )
                log_vars[key] = value.detach()
            totals[name] = self.task_weights[name] * task_total
        return totals, log_vars

    def combine_losses(self, task_losses: dict[str, dict[str, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss-weighting method's objective of the per-task losses (see ``task_totals``)."""
        totals, log_vars = self.task_totals(task_losses)
        total = self.loss_weighting(totals, MessageHub.get_current_instance().get_info("iter", None))
        log_vars["loss"] = total.detach()
        return total, log_vars

    def parse_losses(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The distributed path: mmengine's DDP wrapper runs ``forward(mode='loss')``
        and then this, never :meth:`train_step`; regroup the flat losses by task
        so static weights, the non-finite check and loss-based weighting
        methods apply there too.

        Raises:
            RuntimeError: for gradient-manipulating methods (GradNorm, PCGrad,
                CAGrad), which need per-task gradients of the unreduced model.
        """
        if isinstance(self.loss_weighting, GradientWeighting):
            raise RuntimeError(
                f"{type(self.loss_weighting).__name__} manipulates per-task gradients and runs in single-process "
                "training only; use a loss-based method (Equal, Static, Uncertainty, DWA, FAMO) with --launcher pytorch"
            )
        keys = getattr(self, "_loss_keys", None)
        if keys is None or set(losses) != {k for ks in keys.values() for k in ks}:
            raise ValueError(f"losses {sorted(losses)} do not come from this model's last task_losses call")
        total, log_vars = self.combine_losses({task: {k: losses[k] for k in ks} for task, ks in keys.items()})
        for name, weight in self.loss_weighting.weights.items():
            log_vars[f"weight_{name}"] = torch.tensor(weight * self.task_weights[name])
        return total, log_vars

    def train_step(self, data: dict | tuple | list, optim_wrapper: Any) -> dict[str, Tensor]:
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            task_losses = self.task_losses(data["inputs"], data["data_samples"])
        totals, log_vars = self.task_totals(task_losses)
        shared = [p for m in (self.trunk, self.neck) if m is not None for p in m.parameters()]
        log_vars["loss"] = self.loss_weighting.update(
            totals,
            optim_wrapper,
            shared_params=shared,
            task_params=list(self.heads.parameters()),
            step=MessageHub.get_current_instance().get_info("iter", None),
        )
        for name, weight in self.loss_weighting.weights.items():
            log_vars[f"weight_{name}"] = torch.tensor(weight * self.task_weights[name])
        return log_vars

    @torch.no_grad()
    def predict(
        self,
        inputs: Tensor,
        data_samples: list[MultiTaskDataSample] | None = None,
        heads: Sequence[str] | None = None,
    ) -> list[MultiTaskDataSample]:
        """Run the active (or given) heads; write predictions onto the samples.

        Returns:
            The data samples with ``pred_score``/``pred_label`` (classification),
            ``pred_instances`` (detection: bboxes in original pixels, scores,
            labels, cells; ``embeddings`` when an embedding head runs).
        """
        names = tuple(self.active_heads if heads is None else heads)
        if data_samples is None:
            h, w = inputs.shape[-2:]
            data_samples = [
                MultiTaskDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
                for _ in range(len(inputs))
            ]
        order = self.predict_order(names)
        outputs = self.head_outputs(inputs, order)
        for n in order:
            self.heads[n].predict(outputs[n], data_samples)
        return data_samples

    def predict_order(self, names: Sequence[str]) -> list[str]:
        """``names`` in the order their ``predict`` must run: heads whose predictions others
        build on first (embeddings are read at detections)."""
        return sorted(names, key=lambda n: _PREDICT_ORDER.get(self.heads[n].task, math.inf))


def _head_class(cfg: Any, name: str) -> type:
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"head {name!r} must be a config dict with a 'type', got {cfg!r}")
    cls = MODELS.get(cfg["type"]) if isinstance(cfg["type"], str) else cfg["type"]
    if cls is None:
        heads = sorted(k for k, v in MODELS.module_dict.items() if hasattr(v, "uses_neck"))
        raise KeyError(f"unknown head type {cfg['type']!r} for head {name!r}; registered heads: {heads}")
    return cls
