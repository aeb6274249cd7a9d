"""``RobustMultiTaskPerceptor``: the multi-task model with distributionally robust training.

Two remedies for distribution shift, each switched on in the config's ``robust`` dict:

* **AugMix consistency** (Hendrycks et al., "AugMix: A Simple Data Processing
  Method to Improve Robustness and Uncertainty", ICLR 2020): each training
  batch gets two AugMix views; clean and augmented views run through the model
  in one batch (as the AugMix reference code does, so batch-norm sees all
  three), the task losses are computed on the clean view only (or, with
  ``task_loss_views='all'``, on all three views: the ops preserve every label,
  so each view is a labelled training image), and a Jensen-Shannon
  consistency term ties each listed head's outputs on the three views
  together:

  - ``cls`` heads: the JS divergence of the softmax class distributions
    (the paper's eq. 1, :func:`jensen_shannon_consistency`);
  - ``det`` heads (CenterNet-style heatmaps of independent per-class
    sigmoids, trained with a focal loss): the JS divergence of the per-pixel,
    per-class *Bernoulli* distributions ``sigmoid(logit)``, summed over
    classes and averaged over pixels (:func:`bernoulli_js_consistency`). A
    softmax over classes would be wrong here: at a background pixel every
    class is near 0, and a softmax would turn that into an arbitrary class
    distribution whose disagreement is pure noise.

  The AugMix ops are corruption families of the shift suite at low severity.
  AugMix deliberately trains on operations disjoint from the test
  corruptions; every op available here is also a test family, so the default
  :data:`AUGMIX_TRAIN_OPS` uses only five of the eleven families (one or more
  per kind: lighting, blur, noise) and **holds out** :data:`AUGMIX_HELD_OUT`
  (darkness, gamma, low_resolution, motion_blur, shot_noise,
  jpeg_compression), so the study reports the mCE on seen and on held-out
  families separately (``mCE_seen`` / ``mCE_unseen``).

* **Group DRO** (Sagawa et al., "Distributionally Robust Neural Networks for
  Group Shifts", ICLR 2020, Algorithm 1): samples are grouped by a metainfo
  key (default the synthetic scene's background ``domain``); each head's loss
  is computed per group (the head's own normalisation within the group),
  :class:`GroupDROWeights` takes an exponentiated-gradient step on the
  per-group totals (summed over tasks with the static task weights) and each
  task's loss becomes ``sum_g q_g L_{t,g}`` over the groups present in the
  batch, with ``q`` renormalised over them (so a batch that misses a group
  keeps the loss on the usual scale). The per-task losses then go to the
  model's loss-weighting method as usual. Group weights are logged as
  ``dro_weight_<group>``.

Only ``task_losses`` is overridden, so the training step (and its task-loss
balancing) is the parent's; the robust terms apply in training mode only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.logging import MessageHub
from torch import Tensor

from mtmnv3.core.registry import MODELS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.corruptions import CORRUPTIONS, NUM_SEVERITIES
from mtmnv3.data.synth import DOMAINS
from mtmnv3.heads.base import CLASSIFICATION, DETECTION
from mtmnv3.models.dro import (
    AUGMIX_DEFAULT_SEVERITY,
    AUGMIX_EXTRA_OPS,
    JS_PROB_MIN,
    GroupDROWeights,
    augmix,
    jensen_shannon_consistency,
    unknown_augmix_ops,
)
from mtmnv3.models.perceptor import MultiTaskPerceptor

__all__ = [
    "AUGMIX_HELD_OUT",
    "AUGMIX_TRAIN_OPS",
    "CONSISTENCY_ANCHORS",
    "CONSISTENCY_TASKS",
    "TASK_LOSS_VIEWS",
    "RobustMultiTaskPerceptor",
    "bernoulli_js_consistency",
    "clean_anchored_consistency",
]

#: Corruption families AugMix trains on by default (seen families of the shift suite).
AUGMIX_TRAIN_OPS = ("brightness", "contrast", "color_cast", "defocus_blur", "gaussian_noise")
#: Shift-suite families kept out of training (AugMix keeps its ops disjoint from the test corruptions).
AUGMIX_HELD_OUT = tuple(n for n in CORRUPTIONS if n not in AUGMIX_TRAIN_OPS)
#: Head tasks the consistency term supports, and how it reads their outputs.
CONSISTENCY_TASKS = (CLASSIFICATION, DETECTION)
#: AugMix's consistency weight lambda (Hendrycks et al. 2020, Sec. 4).
DEFAULT_JS_WEIGHT = 12.0
#: Seeds of the AugMix views are drawn from torch's global generator in [0, SEED_RANGE).
SEED_RANGE = 2**31 - 1

#: Which views the task losses read: the clean one (AugMix's recipe) or all three.
TASK_LOSS_VIEWS = ("clean", "all")
#: What the consistency term pulls the views toward: their mixture (AugMix's Jensen-Shannon term, every
#: view moves) or the clean view's prediction held fixed (only the AugMix views move).
CONSISTENCY_ANCHORS = ("mixture", "clean")

_CONSISTENCY_KEYS = {
    "weight",
    "severity",
    "heads",
    "ops",
    "width",
    "depth",
    "alpha",
    "task_loss_views",
    "anchor",
}
_DRO_KEYS = {"eta", "group_key", "groups", "adjustment", "group_sizes"}


def bernoulli_js_consistency(logits_clean: Tensor, logits_aug1: Tensor, logits_aug2: Tensor) -> Tensor:
    """Jensen-Shannon divergence of three sets of independent Bernoulli predictions.

    For sigmoid outputs (e.g. ``(N, C, H, W)`` detection heatmap logits),
    ``p = sigmoid(logit)`` is one Bernoulli per class and pixel; the JS
    divergence ``(KL(p_c||M) + KL(p_1||M) + KL(p_2||M)) / 3`` with
    ``M = (p_c + p_1 + p_2) / 3`` is summed over the classes (dim 1) and
    averaged over the batch and the remaining (spatial) positions.

    Returns:
        0-dim tensor, >= 0; 0 when the three predictions agree.
    """
    if not (logits_clean.shape == logits_aug1.shape == logits_aug2.shape) or logits_clean.dim() < 2:
        raise ValueError(
            "the three logits must have the same (N, C, ...) shape, got "
            f"{tuple(logits_clean.shape)}, {tuple(logits_aug1.shape)}, {tuple(logits_aug2.shape)}"
        )
    probs = [torch.sigmoid(x.float()) for x in (logits_clean, logits_aug1, logits_aug2)]
    mix = torch.clamp(sum(probs) / 3.0, JS_PROB_MIN, 1.0 - JS_PROB_MIN)
    log_m, log_1m = mix.log(), (1.0 - mix).log()
    kls = [torch.xlogy(p, p) - p * log_m + torch.xlogy(1.0 - p, 1.0 - p) - (1.0 - p) * log_1m for p in probs]
    js = sum(kls) / 3.0
    return js.sum(1).mean()


def clean_anchored_consistency(clean: Tensor, aug1: Tensor, aug2: Tensor, kind: str) -> Tensor:
    """Divergence of the AugMix views' predictions from the clean view's, held fixed.

    ``(KL(p_c || p_1) + KL(p_c || p_2)) / 2`` with ``p_c`` detached, so the gradient moves
    only the augmented views' predictions toward the clean one (a self-distillation
    target), never the clean prediction toward the corrupted ones as the symmetric
    Jensen-Shannon term does.

    Args:
        clean, aug1, aug2: logits of the same shape.
        kind: ``'softmax'`` (``(N, K)`` class logits; KL of the class distributions,
            batch mean) or ``'bernoulli'`` (``(N, C, ...)`` sigmoid logits; per class and
            position, summed over classes and averaged over the rest).

    Returns:
        0-dim tensor, >= 0; 0 when both views predict what the clean view does.
    """
    if not (clean.shape == aug1.shape == aug2.shape) or clean.dim() < 2:
        raise ValueError(
            "the three logits must have the same (N, C, ...) shape, got "
            f"{tuple(clean.shape)}, {tuple(aug1.shape)}, {tuple(aug2.shape)}"
        )
    if kind == "softmax":
        target = torch.softmax(clean.detach().float(), dim=1)
        kls = [
            torch.nn.functional.kl_div(torch.log_softmax(a.float(), dim=1), target, reduction="batchmean")
            for a in (aug1, aug2)
        ]
        return sum(kls) / 2.0
    if kind != "bernoulli":
        raise ValueError(f"kind must be 'softmax' or 'bernoulli', got {kind!r}")
    p = torch.sigmoid(clean.detach().float()).clamp(JS_PROB_MIN, 1.0 - JS_PROB_MIN)
    kls = []
    for a in (aug1, aug2):
        log_q = torch.nn.functional.logsigmoid(a.float())
        log_1q = torch.nn.functional.logsigmoid(-a.float())
        kl = p * (p.log() - log_q) + (1.0 - p) * ((1.0 - p).log() - log_1q)
        kls.append(kl.sum(1).mean())
    return sum(kls) / 2.0


def _take(outputs: Any, index: Tensor | slice) -> Any:
    """Select batch entries of a head's raw outputs (a tensor, or a dict/list/tuple of them)."""
    if isinstance(outputs, Tensor):
        return outputs[index]
    if isinstance(outputs, Mapping):
        return {k: _take(v, index) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_take(v, index) for v in outputs)
    raise TypeError(f"cannot split head outputs of type {type(outputs).__name__} by sample")


def _choice(cfg: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    """``robust.consistency[key]``, one of ``allowed`` (default: the first)."""
    value = cfg.get(key, allowed[0])
    if value not in allowed:
        raise ValueError(f"robust.consistency.{key} must be one of {allowed}, got {value!r}")
    return value


def _check_keys(cfg: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"unknown {where} option(s) {unknown}; allowed: {sorted(allowed)}")


@MODELS.register_module()
class RobustMultiTaskPerceptor(MultiTaskPerceptor):
    """``MultiTaskPerceptor`` trained with AugMix consistency and/or group DRO.

    Args:
        robust: ``dict(consistency=dict(...), group_dro=dict(...))``; either may be
            left out (both out: plain training).

            ``consistency``: ``weight`` (float, or ``{head: float}``; default 12,
            the paper's lambda), ``severity`` (AugMix severity 1..5, default 3),
            ``heads`` (head names, default the classification and detection
            heads where present; heads of tasks :data:`CONSISTENCY_TASKS`), ``ops`` (corruption families, default
            :data:`AUGMIX_TRAIN_OPS`), ``width`` (3), ``depth`` (-1: random
            1..3), ``alpha`` (1.0), ``task_loss_views`` (``'clean'``, AugMix's
            recipe, or ``'all'``: the task losses average over the clean and
            both AugMix views, each view's samples keeping their labels),
            ``anchor`` (``'mixture'``, AugMix's Jensen-Shannon term, or
            ``'clean'``: :func:`clean_anchored_consistency`, the views pulled
            toward the clean prediction held fixed). ``ops`` may also name
            :data:`~mtmnv3.models.dro.AUGMIX_EXTRA_OPS` (AugMix's own ops,
            outside the shift suite).

            ``group_dro``: ``eta`` (exponentiated-gradient step, default 0.01),
            ``group_key`` (metainfo key, default ``'domain'``), ``groups``
            (the values, default the synthetic scene domains), ``adjustment``
            and ``group_sizes`` (Sagawa et al.'s generalisation adjustment).
        **kwargs: ``MultiTaskPerceptor`` arguments.

    Attributes:
        augmix_ops: the AugMix training families (None without consistency);
            the robustness study reports mCE on the others as ``mCE_unseen``.
        group_dro: the :class:`GroupDROWeights` module (None without group DRO).
    """

    def __init__(self, *args: Any, robust: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        robust = dict(robust or {})
        _check_keys(robust, {"consistency", "group_dro"}, "robust")
        self.consistency_heads: dict[str, float] = {}
        self.task_loss_views = "clean"
        self.consistency_anchor = "mixture"
        self.augmix_ops: tuple[str, ...] | None = None
        self.augmix_kwargs: dict[str, Any] = {}
        self.group_dro: GroupDROWeights | None = None
        self.group_key = ""
        self.dro_groups: tuple[Any, ...] = ()
        if robust.get("consistency") is not None:
            self._init_consistency(dict(robust["consistency"]))
        if robust.get("group_dro") is not None:
            self._init_group_dro(dict(robust["group_dro"]))

    # ---- configuration ---------------------------------------------------------------------
    def _init_consistency(self, cfg: dict[str, Any]) -> None:
        _check_keys(cfg, _CONSISTENCY_KEYS, "robust.consistency")
        trainable = {n: self.heads[n].task for n in self.trainable_heads}
        default_heads = tuple(n for n, task in trainable.items() if task in CONSISTENCY_TASKS)
        heads = tuple(cfg.get("heads", default_heads))
        bad = [h for h in heads if trainable.get(h) not in CONSISTENCY_TASKS]
        if not heads or bad:
            raise ValueError(
                f"robust.consistency.heads must name heads of tasks {CONSISTENCY_TASKS} (trainable ones) among "
                f"{trainable}, got {heads!r}"
            )
        weight = cfg.get("weight", DEFAULT_JS_WEIGHT)
        weights = dict(weight) if isinstance(weight, Mapping) else {h: weight for h in heads}
        if set(weights) != set(heads) or any(
            not isinstance(w, (int, float)) or w < 0 for w in weights.values()
        ):
            raise ValueError(
                f"robust.consistency.weight must be >= 0 (or one per head {heads}), got {weight!r}"
            )
        severity = cfg.get("severity", AUGMIX_DEFAULT_SEVERITY)
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= NUM_SEVERITIES:
            raise ValueError(
                f"robust.consistency.severity must be an int in 1..{NUM_SEVERITIES}, got {severity!r}"
            )
        ops = tuple(cfg.get("ops", AUGMIX_TRAIN_OPS))
        if not ops or unknown_augmix_ops(ops):
            raise ValueError(
                f"robust.consistency.ops must be corruption families {list(CORRUPTIONS)} or AugMix ops "
                f"{list(AUGMIX_EXTRA_OPS)}, got {ops!r}"
            )
        pre = self.data_preprocessor
        if not (hasattr(pre, "mean") and hasattr(pre, "std")):
            raise TypeError(
                f"AugMix consistency needs an ImgDataPreprocessor-like data preprocessor (mean/std), "
                f"got {type(pre).__name__}"
            )
        self.task_loss_views = _choice(cfg, "task_loss_views", TASK_LOSS_VIEWS)
        self.consistency_anchor = _choice(cfg, "anchor", CONSISTENCY_ANCHORS)
        self.consistency_heads = {h: float(weights[h]) for h in heads}
        self.augmix_ops = ops
        self.augmix_kwargs = dict(
            severity=severity,
            width=cfg.get("width", 3),
            depth=cfg.get("depth", -1),
            alpha=cfg.get("alpha", 1.0),
        )
        # validate width/depth/alpha now rather than at the first iteration
        augmix(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ops=ops, **self.augmix_kwargs)

    def _init_group_dro(self, cfg: dict[str, Any]) -> None:
        _check_keys(cfg, _DRO_KEYS, "robust.group_dro")
        groups = tuple(cfg.get("groups", DOMAINS))
        if not groups or len(set(groups)) != len(groups):
            raise ValueError(f"robust.group_dro.groups must be distinct values, got {groups!r}")
        self.group_key = str(cfg.get("group_key", "domain"))
        self.dro_groups = groups
        self.group_dro = GroupDROWeights(
            len(groups),
            eta=cfg.get("eta", 0.01),
            adjustment=cfg.get("adjustment", 0.0),
            group_sizes=cfg.get("group_sizes"),
        )

    # ---- training ------------------------------------------------------------------------------
    def _pixels(self, inputs: Tensor) -> Tensor:
        """Undo the data preprocessor's normalisation: uint8 pixels in the same channel order."""
        pre = self.data_preprocessor
        if getattr(pre, "_enable_normalize", True):
            inputs = inputs * pre.std + pre.mean
        return inputs.round().clamp(0, 255).to(torch.uint8)

    def _normalise(self, pixels: Tensor) -> Tensor:
        pre = self.data_preprocessor
        x = pixels.float()
        return (x - pre.mean) / pre.std if getattr(pre, "_enable_normalize", True) else x

    def augmix_views(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Two AugMix views of a preprocessed batch ``(N, 3, H, W)``, preprocessed the same way.

        Seeds come from torch's global generator (seeded by the runner's
        ``randomness`` config), so runs are reproducible.
        """
        pixels = self._pixels(inputs.detach())
        seeds = torch.randint(0, SEED_RANGE, (2,)).tolist()
        views = [augmix(pixels, seed=int(s), ops=self.augmix_ops, **self.augmix_kwargs) for s in seeds]
        return self._normalise(views[0]), self._normalise(views[1])

    def group_ids(self, data_samples: Sequence[MultiTaskDataSample]) -> Tensor:
        """``(N,)`` group index of each sample from its ``group_key`` metainfo."""
        index = {g: i for i, g in enumerate(self.dro_groups)}
        ids = []
        for s in data_samples:
            if self.group_key not in s.metainfo:
                raise ValueError(
                    f"group DRO needs metainfo {self.group_key!r} on every training sample; "
                    f"got keys {sorted(s.metainfo)}"
                )
            value = s.metainfo[self.group_key]
            if value not in index:
                raise ValueError(
                    f"sample {self.group_key}={value!r} is not one of the groups {self.dro_groups}"
                )
            ids.append(index[value])
        return torch.tensor(ids, dtype=torch.long)

    def _group_dro_losses(
        self, outputs: dict[str, Any], data_samples: Sequence[MultiTaskDataSample]
    ) -> dict[str, dict[str, Tensor]]:
        """Per-task losses as ``sum_g q_g L_{t,g}`` over the groups present (Sagawa et al. 2020)."""
        assert self.group_dro is not None
        gids = self.group_ids(data_samples)
        present = torch.unique(gids).tolist()
        # Step 1: every head's losses on each group's samples.
        per_group: dict[int, dict[str, dict[str, Tensor]]] = {}
        for g in present:
            idx = torch.nonzero(gids == g).flatten()
            samples = [data_samples[i] for i in idx.tolist()]
            per_group[g] = {
                n: self.heads[n].loss(_take(outputs[n], idx.to(_device(outputs[n]))), samples)
                for n in self.trainable_heads
            }
        # Step 2: exponentiated-gradient step on the group weights, from the per-group totals.
        group_losses = torch.zeros(self.group_dro.num_groups)
        counts = torch.bincount(gids, minlength=self.group_dro.num_groups)
        for g, losses in per_group.items():
            group_losses[g] = sum(
                self.task_weights[n] * sum(v.detach().float().cpu() for v in ls.values())
                for n, ls in losses.items()
            )
        q = self.group_dro.update(group_losses.to(self.group_dro.weights.device), counts)
        hub = MessageHub.get_current_instance()
        for i, g in enumerate(self.dro_groups):
            hub.update_scalar(f"train/dro_weight_{g}", float(q[i]))
        # Step 3: each task's loss, weighted by q renormalised over the groups present.
        q_present = q[present] / q[present].sum()
        return {
            n: {
                key: sum(w * per_group[g][n][key] for w, g in zip(q_present.tolist(), present))
                for key in per_group[present[0]][n]
            }
            for n in self.trainable_heads
        }

    def task_losses(
        self, inputs: Tensor, data_samples: Sequence[MultiTaskDataSample]
    ) -> dict[str, dict[str, Tensor]]:
        """Per head: its losses on the clean view, or on all views with ``task_loss_views='all'``
        (group-DRO weighted when enabled), plus
        ``loss_<head>_js`` (the weighted JS consistency) for the consistency heads.

        In eval mode, or with no robust option, this is the parent's ``task_losses``.
        """
        if not self.training or (not self.consistency_heads and self.group_dro is None):
            return super().task_losses(inputs, data_samples)
        if data_samples is None:
            raise ValueError("training needs data_samples with labels")
        names = self.trainable_heads
        n = len(inputs)
        samples = list(data_samples)
        if self.consistency_heads:
            aug1, aug2 = self.augmix_views(inputs)
            all_outputs = self.head_outputs(torch.cat([inputs, aug1, aug2]), names)
            views = [
                {h: _take(o, slice(i * n, (i + 1) * n)) for h, o in all_outputs.items()} for i in range(3)
            ]
            if self.task_loss_views == "all":  # every view is a labelled sample
                outputs, samples = all_outputs, samples * 3
            else:
                outputs = views[0]
        else:
            outputs = self.head_outputs(inputs, names)
        if self.group_dro is not None:
            losses = self._group_dro_losses(outputs, samples)
        else:
            losses = {h: dict(self.heads[h].loss(outputs[h], samples)) for h in names}
        for h, weight in self.consistency_heads.items():
            losses[h][f"loss_{h}_js"] = weight * self._consistency(h, [v[h] for v in views])
        return losses

    def _consistency(self, head: str, outputs: list[Any]) -> Tensor:
        """The consistency term of one head over its (clean, aug1, aug2) outputs."""
        anchored = self.consistency_anchor == "clean"
        if self.heads[head].task == CLASSIFICATION:
            logits = [o["logits"] if isinstance(o, Mapping) else o for o in outputs]
            if anchored:
                return clean_anchored_consistency(*logits, kind="softmax")
            return jensen_shannon_consistency(*logits, dim=1)
        heatmaps = [o["heatmap"] if isinstance(o, Mapping) else o for o in outputs]
        if anchored:
            return clean_anchored_consistency(*heatmaps, kind="bernoulli")
        return bernoulli_js_consistency(*heatmaps)


def _device(outputs: Any) -> torch.device:
    if isinstance(outputs, Tensor):
        return outputs.device
    first = next(iter(outputs.values() if isinstance(outputs, Mapping) else outputs))
    return _device(first)
