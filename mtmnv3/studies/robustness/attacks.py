"""L-infinity adversarial attacks on one head or on the shared trunk.

FGSM (Goodfellow et al., "Explaining and Harnessing Adversarial Examples",
ICLR 2015) and PGD (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018) in **pixel space**: the attacked tensor is
the image in ``[0, 1]`` (uint8 / 255) *before* the model's data
preprocessor normalises it, so ``eps = 4/255`` means "at most 4 grey levels
per pixel". Every step is projected back onto the eps ball around the clean
image and onto the valid range ``[0, 1]``.

Targets:

* a head name (as named in the model's config): ascend the sum of that
  head's losses (what ``model.task_losses`` returns for it) on the given
  labelled data samples; by default the model's detection head (the head
  declaring ``mtmnv3.heads.DETECTION``, whatever its name);
* ``'trunk'``: ascend the relative squared L2 distance between the trunk's
  tap features on the attacked and on the clean image (a feature-space
  attack that hurts every head sharing the trunk, cf. Inkawhich et al.,
  "Feature Space Perturbations Yield More Transferable Adversarial
  Examples", CVPR 2019).

The model runs in eval mode (batch-norm statistics frozen; restored
afterwards), gradients are taken with respect to the input only
(``torch.autograd.grad``), so no parameter ``.grad`` is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.heads.base import DETECTION, heads_by_task

__all__ = [
    "TRUNK_TARGET",
    "attack_loss",
    "fgsm_attack",
    "pgd_attack",
    "pixels_to_unit",
    "trunk_feature_distance",
    "unit_to_pixels",
]

TRUNK_TARGET = "trunk"
#: Madry et al.'s step size rule: alpha = PGD_STEP_FACTOR * eps / steps.
PGD_STEP_FACTOR = 2.5
#: Guards the division by the clean features' energy in the trunk loss.
FEATURE_EPS = 1e-12


def pixels_to_unit(images: Tensor) -> Tensor:
    """uint8 ``(N, 3, H, W)`` (or a list of ``(3, H, W)`` of one size) -> float ``[0, 1]``."""
    if isinstance(images, (list, tuple)):
        images = torch.stack(list(images))
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected uint8 (N, 3, H, W) images, got {got}")
    return images.float() / 255.0


def unit_to_pixels(images: Tensor) -> Tensor:
    """float ``[0, 1]`` -> uint8 (rounding may move a pixel by up to 0.5/255 beyond eps)."""
    return (images.detach() * 255.0).round().clamp(0, 255).to(torch.uint8)


def _normalised(model: nn.Module, x01: Tensor) -> Tensor:
    """Run the model's own data preprocessor (normalise, pad) differentiably on ``[0, 1]`` images."""
    data = model.data_preprocessor(dict(inputs=x01 * 255.0, data_samples=None), False)
    return data["inputs"]


def _check_target(model: nn.Module, target: str | None) -> str:
    """The attacked head's name or ``'trunk'``; None: the model's detection head."""
    if target is None:
        return heads_by_task(model.heads, required=(DETECTION,))[DETECTION]
    if target != TRUNK_TARGET and target not in model.heads:
        raise ValueError(f"target must be one of {[*model.heads, TRUNK_TARGET]}, got {target!r}")
    return target


def _trunk_taps(model: nn.Module, taps: Sequence[int] | None) -> list[int]:
    return sorted(model.required_taps(list(model.heads))) if taps is None else sorted(set(taps))


def trunk_feature_distance(
    model: nn.Module,
    x01: Tensor,
    reference: dict[int, Tensor] | Tensor,
    taps: Sequence[int] | None = None,
) -> Tensor:
    """Per-image relative feature distance, summed over the trunk taps.

    ``sum_t ||f_t(x) - f_t(ref)||^2 / ||f_t(ref)||^2`` (each tap weighted equally
    whatever its scale).

    Args:
        model: a ``MultiTaskPerceptor``.
        x01: ``(N, 3, H, W)`` images in ``[0, 1]``.
        reference: clean images in ``[0, 1]`` or their precomputed tap features.
        taps: trunk stages to compare (default: every stage a head reads).

    Returns:
        ``(N,)`` distances (differentiable w.r.t. ``x01``).
    """
    taps = _trunk_taps(model, taps)
    if isinstance(reference, Tensor):
        with torch.no_grad():
            reference = model.trunk.forward_taps(_normalised(model, reference), taps)
    feats = model.trunk.forward_taps(_normalised(model, x01), taps)
    total = x01.new_zeros(len(x01))
    for t in taps:
        ref = reference[t].detach()
        diff = (feats[t] - ref).flatten(1).pow(2).sum(1)
        total = total + diff / ref.flatten(1).pow(2).sum(1).clamp(min=FEATURE_EPS)
    return total


def attack_loss(
    model: nn.Module,
    x01: Tensor,
    data_samples: Sequence[MultiTaskDataSample] | None,
    target: str,
    reference: dict[int, Tensor] | Tensor | None = None,
    taps: Sequence[int] | None = None,
) -> Tensor:
    """The scalar an attack ascends (also what a study reports clean vs attacked).

    Args:
        model: a ``MultiTaskPerceptor``.
        x01: ``(N, 3, H, W)`` images in ``[0, 1]``.
        data_samples: labelled samples (needed for head targets).
        target: a head name or ``'trunk'``.
        reference: for ``'trunk'``: the clean images or their tap features.
        taps: for ``'trunk'``: the stages compared.

    Returns:
        0-dim tensor: the head's summed losses, or the mean trunk feature distance.
    """
    target = _check_target(model, target)
    if target == TRUNK_TARGET:
        if reference is None:
            raise ValueError("the trunk target needs the clean reference images or features")
        return trunk_feature_distance(model, x01, reference, taps).mean()
    if data_samples is None or len(data_samples) != len(x01):
        got = None if data_samples is None else len(data_samples)
        raise ValueError(f"attacking head {target!r} needs one labelled data sample per image, got {got}")
    outputs = model.head_outputs(_normalised(model, x01), [target])
    return sum(model.heads[target].loss(outputs[target], data_samples).values())


def pgd_attack(
    model: nn.Module,
    inputs_float: Tensor,
    data_samples: Sequence[MultiTaskDataSample] | None = None,
    target: str | None = None,
    eps: float = 4 / 255,
    alpha: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    seed: int = 0,
    taps: Sequence[int] | None = None,
) -> Tensor:
    """Projected gradient ascent in the L-infinity ball (Madry et al. 2018).

    Args:
        model: a ``MultiTaskPerceptor`` (put in eval mode for the attack and
            restored afterwards).
        inputs_float: clean images ``(N, 3, H, W)`` in ``[0, 1]``
            (:func:`pixels_to_unit` of the uint8 batch).
        data_samples: the batch's labelled samples (head targets).
        target: a head name of the model, or ``'trunk'``; None: its detection head.
        eps: L-infinity radius in ``[0, 1]`` pixel units (``4/255`` = 4 grey levels).
        alpha: step size in the same units (default ``2.5 * eps / steps``).
        steps: gradient steps (>= 1).
        random_start: start from a uniform point of the eps ball.
        seed: seed of the random start.
        taps: trunk stages for the ``'trunk'`` target (default: those the heads read).

    Returns:
        Adversarial images ``(N, 3, H, W)`` in ``[0, 1]``, detached, with
        ``|adv - clean| <= eps`` everywhere.

    Raises:
        ValueError: bad target, eps, alpha, steps or inputs.
    """
    target = _check_target(model, target)
    if (
        not isinstance(inputs_float, Tensor)
        or not inputs_float.is_floating_point()
        or inputs_float.dim() != 4
    ):
        got = (
            f"{inputs_float.dtype} {tuple(inputs_float.shape)}"
            if isinstance(inputs_float, Tensor)
            else type(inputs_float).__name__
        )
        raise ValueError(f"inputs_float must be float (N, 3, H, W) images in [0, 1], got {got}")
    if inputs_float.min() < 0 or inputs_float.max() > 1:
        raise ValueError(
            f"inputs_float must lie in [0, 1] (uint8 / 255), got range "
            f"[{inputs_float.min().item():.3f}, {inputs_float.max().item():.3f}]"
        )
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be in (0, 1] ([0, 1] pixel units, e.g. 4/255), got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    alpha = PGD_STEP_FACTOR * eps / steps if alpha is None else alpha
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")

    clean = inputs_float.detach()
    was_training = model.training
    model.eval()
    try:
        reference = None
        if target == TRUNK_TARGET:
            with torch.no_grad():
                reference = model.trunk.forward_taps(_normalised(model, clean), _trunk_taps(model, taps))
        # Step 1: start at the clean image or a random point of the eps ball.
        adv = clean.clone()
        if random_start:
            g = torch.Generator().manual_seed(int(seed))
            noise = torch.rand(clean.shape, generator=g, dtype=clean.dtype) * 2 - 1
            adv = (clean + eps * noise.to(clean.device)).clamp(0.0, 1.0)
        # Step 2: signed-gradient ascent, projected onto the eps ball and [0, 1].
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                loss = attack_loss(model, adv, data_samples, target, reference, taps)
                (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + alpha * grad.sign()
                adv = torch.min(torch.max(adv, clean - eps), clean + eps).clamp(0.0, 1.0)
    finally:
        model.train(was_training)
    return adv.detach()


def fgsm_attack(
    model: nn.Module,
    inputs_float: Tensor,
    data_samples: Sequence[MultiTaskDataSample] | None = None,
    target: str | None = None,
    eps: float = 4 / 255,
    taps: Sequence[int] | None = None,
) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps.

    Arguments and return as :func:`pgd_attack` (``steps=1``, ``alpha=eps``,
    no random start).
    """
    return pgd_attack(
        model, inputs_float, data_samples, target, eps=eps, alpha=eps, steps=1, random_start=False, taps=taps
    )
