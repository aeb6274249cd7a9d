"""Distributionally robust training pieces: group DRO weights and AugMix.

* :class:`GroupDROWeights`: the online group DRO algorithm of Sagawa et al.,
  "Distributionally Robust Neural Networks for Group Shifts" (ICLR 2020,
  Algorithm 1): group weights ``q`` follow exponentiated-gradient ascent on
  the per-group losses, and the model minimises ``sum_g q_g * loss_g``, so
  training concentrates on the worst group (a lighting domain, a corruption).
* :func:`augmix` and :func:`jensen_shannon_consistency`: AugMix (Hendrycks et
  al., "AugMix: A Simple Data Processing Method to Improve Robustness and
  Uncertainty", ICLR 2020): mixtures of random augmentation chains, plus the
  Jensen-Shannon consistency loss between the predictions on the clean image
  and two AugMix views. The chains are built from this package's corruption
  families at low severity; they are all photometric or blur operations, so
  boxes, identities and labels stay valid. Note that AugMix deliberately
  avoids the test corruptions; hold families out with ``ops=`` when the
  same families form the evaluation suite. :data:`AUGMIX_EXTRA_OPS` adds the
  paper's own photometric ops (autocontrast, equalize, posterize, solarize,
  and sharpness from its extended set), which are not families of the shift
  suite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor, nn

from mtmnv3.data.corruptions import CORRUPTIONS, NUM_SEVERITIES, corrupt

__all__ = [
    "AUGMIX_OPS",
    "AUGMIX_DEFAULT_SEVERITY",
    "AUGMIX_EXTRA_OPS",
    "GroupDROWeights",
    "augmentation_op",
    "augmix",
    "group_mean_losses",
    "jensen_shannon_consistency",
]

#: Corruption families AugMix chains draw from by default (label preserving, mild at low severity).
AUGMIX_OPS = (
    "brightness",
    "darkness",
    "contrast",
    "gamma",
    "color_cast",
    "low_resolution",
    "defocus_blur",
    "motion_blur",
    "gaussian_noise",
    "jpeg_compression",
)
#: Parameter of each AugMix op that is not a shift-suite family, per severity 1..5 (None: no parameter).
#: These are AugMix's label-preserving photometric ops (Hendrycks et al. 2020, Appendix C; sharpness is
#: from its extended set): posterize keeps ``bits`` bits, solarize inverts pixels >= ``threshold``,
#: sharpness blends with a smoothed image by ``factor`` (> 1 sharpens).
_EXTRA_OP_LEVELS: dict[str, tuple[float, ...] | None] = {
    "autocontrast": None,
    "equalize": None,
    "posterize": (7, 6, 5, 4, 3),
    "solarize": (224, 192, 160, 128, 96),
    "sharpness": (1.4, 1.8, 2.2, 2.6, 3.0),
}
#: AugMix ops that are not families of the shift suite (usable in ``ops=`` beside the corruptions).
AUGMIX_EXTRA_OPS = tuple(_EXTRA_OP_LEVELS)
#: Default of AugMix's ``severity``: each op draws a corruption severity in 1..severity.
AUGMIX_DEFAULT_SEVERITY = 3
#: Chain depth range when ``depth=-1`` (AugMix draws 1..3 ops per chain).
AUGMIX_DEPTH_RANGE = (1, 3)
#: Probabilities are clamped here before the log in the JS loss (as the AugMix reference code).
JS_PROB_MIN = 1e-7


# ---- group DRO -------------------------------------------------------------------------------
def group_mean_losses(losses: Tensor, group_ids: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Average per-sample losses within each group.

    Args:
        losses: ``(N,)`` per-sample losses.
        group_ids: ``(N,)`` group index of each sample in ``0 .. num_groups-1``.
        num_groups: number of groups G.

    Returns:
        ``(G,)`` mean loss per group (0 for absent groups, differentiable) and
        ``(G,)`` sample counts.
    """
    if losses.shape != group_ids.shape or losses.dim() != 1:
        raise ValueError(
            f"losses and group_ids must both be (N,), got {tuple(losses.shape)} and {tuple(group_ids.shape)}"
        )
    if len(group_ids) and (group_ids.min() < 0 or group_ids.max() >= num_groups):
        raise ValueError(f"group_ids must be in 0..{num_groups - 1}, got {group_ids.tolist()}")
    group_ids = group_ids.long().to(losses.device)
    sums = losses.new_zeros(num_groups).index_add(0, group_ids, losses)
    counts = torch.bincount(group_ids, minlength=num_groups).to(losses)
    return sums / counts.clamp(min=1), counts


class GroupDROWeights(nn.Module):
    """Online group DRO weights (Sagawa et al. 2020, Algorithm 1).

    ``q_g <- q_g * exp(eta * (loss_g + C / sqrt(n_g)))`` for the groups present
    in the batch, then ``q <- q / sum(q)``; the robust loss is
    ``sum_g q_g * loss_g`` with ``q`` treated as a constant. Groups absent from
    the batch keep their unnormalised weight, so they neither gain nor lose
    ground from a batch that does not see them.

    Args:
        num_groups: number of groups G (>= 1).
        eta: step size of the exponentiated-gradient update (> 0; the paper uses 0.01).
        adjustment: Sagawa et al.'s generalisation adjustment ``C`` (>= 0);
            ``C / sqrt(n_g)`` with ``n_g`` the group's training-set size is
            added to its loss in the update. Needs ``group_sizes``.
        group_sizes: training-set sample count per group (for ``adjustment``).

    Attributes:
        weights: ``(G,)`` buffer, the current group weights (sum 1), saved in the state dict.
    """

    def __init__(
        self,
        num_groups: int,
        eta: float = 0.01,
        adjustment: float = 0.0,
        group_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
        if not eta > 0:
            raise ValueError(f"eta must be positive, got {eta!r}")
        if adjustment < 0:
            raise ValueError(f"adjustment must be >= 0, got {adjustment!r}")
        if adjustment > 0:
            if group_sizes is None or len(group_sizes) != num_groups or min(group_sizes) < 1:
                raise ValueError(
                    f"adjustment needs group_sizes: {num_groups} positive counts, got {group_sizes!r}"
                )
            bonus = torch.tensor([adjustment / math.sqrt(n) for n in group_sizes], dtype=torch.float32)
        else:
            bonus = torch.zeros(num_groups)
        self.num_groups = num_groups
        self.eta = float(eta)
        self.register_buffer("bonus", bonus, persistent=False)
        self.register_buffer("weights", torch.full((num_groups,), 1.0 / num_groups))

    def _check(self, group_losses: Tensor, group_counts: Tensor | None) -> Tensor:
        if group_losses.shape != (self.num_groups,):
            raise ValueError(
                f"group_losses must have shape ({self.num_groups},), got {tuple(group_losses.shape)}"
            )
        if group_counts is None:
            return torch.ones(self.num_groups, dtype=torch.bool, device=group_losses.device)
        if group_counts.shape != (self.num_groups,):
            raise ValueError(
                f"group_counts must have shape ({self.num_groups},), got {tuple(group_counts.shape)}"
            )
        return group_counts.to(group_losses.device) > 0

    @torch.no_grad()
    def update(self, group_losses: Tensor, group_counts: Tensor | None = None) -> Tensor:
        """One exponentiated-gradient step on the group weights.

        Args:
            group_losses: ``(G,)`` mean loss per group.
            group_counts: ``(G,)`` samples per group in the batch (None: all present).

        Returns:
            The new ``(G,)`` weights (a copy).
        """
        present = self._check(group_losses, group_counts)
        step = self.eta * (group_losses.detach().float() + self.bonus.to(group_losses.device))
        log_w = self.weights.log() + torch.where(present, step, torch.zeros_like(step))
        self.weights.copy_(torch.softmax(log_w, dim=0))
        return self.weights.clone()

    def forward(self, group_losses: Tensor, group_counts: Tensor | None = None) -> Tensor:
        """Update the weights, then return the robust loss ``sum_g q_g * loss_g`` (0-dim)."""
        weights = self.update(group_losses, group_counts)
        return (weights.to(group_losses) * group_losses).sum()


# ---- AugMix ------------------------------------------------------------------------------------
def jensen_shannon_consistency(
    logits_clean: Tensor, logits_aug1: Tensor, logits_aug2: Tensor, dim: int = 1
) -> Tensor:
    """Jensen-Shannon divergence among three predictions (Hendrycks et al. 2020, eq. 1).

    ``JS = (KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)) / 3`` with
    ``M = (p_c + p_1 + p_2) / 3`` and ``p = softmax(logits, dim)``, averaged
    over the batch (first dimension). Works for ``(N, K)`` classification
    logits and for dense ``(N, K, H, W)`` logits (summed over positions).

    Returns:
        0-dim tensor, >= 0; 0 when the three predictions agree.
    """
    if not (logits_clean.shape == logits_aug1.shape == logits_aug2.shape):
        raise ValueError(
            "the three logits must have the same shape, got "
            f"{tuple(logits_clean.shape)}, {tuple(logits_aug1.shape)}, {tuple(logits_aug2.shape)}"
        )
    probs = [F.softmax(x.float(), dim=dim) for x in (logits_clean, logits_aug1, logits_aug2)]
    log_mixture = torch.clamp(sum(probs) / 3.0, JS_PROB_MIN, 1.0).log()
    kls = [F.kl_div(log_mixture, p, reduction="batchmean") for p in probs]
    return sum(kls) / 3.0


def unknown_augmix_ops(ops: Sequence[str]) -> list[str]:
    """The names in ``ops`` that are neither shift-suite corruptions nor :data:`AUGMIX_EXTRA_OPS`."""
    return [o for o in ops if o not in CORRUPTIONS and o not in _EXTRA_OP_LEVELS]


def _check_augmix_args(severity: int, width: int, depth: int, alpha: float, ops: Sequence[str]) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= NUM_SEVERITIES:
        raise ValueError(f"severity must be an int in 1..{NUM_SEVERITIES}, got {severity!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or (depth < 1 and depth != -1):
        raise ValueError(f"depth must be a positive int or -1 (random 1..3), got {depth!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    unknown = unknown_augmix_ops(ops)
    if not ops or unknown:
        raise ValueError(
            f"ops must be a non-empty list of corruption names {sorted(CORRUPTIONS)} or AugMix ops "
            f"{list(AUGMIX_EXTRA_OPS)}, got {ops!r} (unknown: {unknown})"
        )


def augmentation_op(
    images: Tensor, name: str, severity: int, seed: int = 0, ids: np.ndarray | None = None
) -> Tensor:
    """One AugMix op on a uint8 ``(N, 3, H, W)`` batch: a shift-suite corruption or an
    :data:`AUGMIX_EXTRA_OPS` op, at ``severity`` in 1..5.

    Corruptions take ``seed`` and ``ids`` (each image's video and frame id) for their
    random draws; the extra ops are deterministic.
    """
    if name in CORRUPTIONS:
        return corrupt(images, name, severity, seed=seed, video_ids=ids, frame_ids=ids)
    if name not in _EXTRA_OP_LEVELS:
        raise ValueError(
            f"unknown AugMix op {name!r}; expected one of {sorted(CORRUPTIONS)} or {list(AUGMIX_EXTRA_OPS)}"
        )
    if not 1 <= severity <= NUM_SEVERITIES:
        raise ValueError(f"severity must be in 1..{NUM_SEVERITIES}, got {severity!r}")
    levels = _EXTRA_OP_LEVELS[name]
    value = None if levels is None else levels[severity - 1]
    if name == "autocontrast":
        return TF.autocontrast(images)
    if name == "equalize":
        return TF.equalize(images)
    if name == "posterize":
        return TF.posterize(images, int(value))
    if name == "solarize":
        return TF.solarize(images, float(value))
    return TF.adjust_sharpness(images, float(value))


def augmix(
    images: Tensor,
    severity: int = AUGMIX_DEFAULT_SEVERITY,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    seed: int = 0,
    ops: Sequence[str] = AUGMIX_OPS,
) -> Tensor:
    """AugMix (Hendrycks et al. 2020, Algorithm 1) on a uint8 batch.

    Each image gets ``width`` chains of ``depth`` ops (random 1..3 when -1);
    each op is a corruption family (or an :data:`AUGMIX_EXTRA_OPS` op) from ``ops`` at a random severity in
    ``1 .. severity``, drawn per image. The chains
    are mixed with Dirichlet(alpha) weights and the mixture is blended with
    the original with a Beta(alpha, alpha) weight, per image. Ops are applied
    to all images that drew the same (op, severity) at a step at once.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        severity: 1..5, the highest corruption severity an op draws.
        width: number of chains.
        depth: ops per chain, or -1 for random 1..3 per chain and image.
        alpha: Dirichlet and Beta concentration.
        seed: non-negative seed of every draw.
        ops: corruption families and/or :data:`AUGMIX_EXTRA_OPS` to draw from.

    Returns:
        uint8 ``(N, 3, H, W)`` augmented images (same device).
    """
    _check_augmix_args(severity, width, depth, alpha, ops)
    if (
        not isinstance(images, Tensor)
        or images.dtype != torch.uint8
        or images.dim() != 4
        or images.shape[1] != 3
    ):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {got}")
    n = images.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA6]))
    # Step 1: draw every random choice up front (per image).
    mix = torch.from_numpy(rng.dirichlet([alpha] * width, size=n)).float()  # (N, width)
    keep = torch.from_numpy(rng.beta(alpha, alpha, size=n)).float()  # (N,)
    max_depth = AUGMIX_DEPTH_RANGE[1] if depth == -1 else depth
    lo, hi = AUGMIX_DEPTH_RANGE
    depths = rng.integers(lo, hi + 1, size=(width, n)) if depth == -1 else np.full((width, n), depth)
    op_idx = rng.integers(0, len(ops), size=(width, max_depth, n))
    sev = rng.integers(1, severity + 1, size=(width, max_depth, n))
    op_seeds = rng.integers(0, 2**31, size=(width, max_depth))
    # Step 2: run the chains, one (op, severity) group of images at a time.
    mixed = torch.zeros(images.shape, dtype=torch.float32, device=images.device)
    for w in range(width):
        chain = images.clone()
        for d in range(max_depth):
            active = depths[w] > d
            for o, s in {(int(op_idx[w, d, i]), int(sev[w, d, i])) for i in np.flatnonzero(active)}:
                sel = np.flatnonzero(active & (op_idx[w, d] == o) & (sev[w, d] == s))
                idx = torch.from_numpy(sel).to(images.device)
                chain[idx] = augmentation_op(chain[idx], ops[o], s, seed=int(op_seeds[w, d]), ids=sel)
        mixed += mix[:, w].to(images.device).view(-1, 1, 1, 1) * chain.float()
    # Step 3: blend with the original image.
    m = keep.to(images.device).view(-1, 1, 1, 1)
    out = m * images.float() + (1 - m) * mixed
    return out.round().clamp(0, 255).to(torch.uint8)
