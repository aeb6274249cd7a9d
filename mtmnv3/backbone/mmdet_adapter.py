"""MMDetection 3.x adapter: the trunks as mmdet backbones.

Pull it into an mmdet config with::

    custom_imports = dict(imports=['mtmnv3.backbone.mmdet_adapter'], allow_failed_imports=False)
    model = dict(backbone=dict(type='MobileNetV3Trunk', arch='large', out_indices=(2, 3, 4)))
    # or a successor trunk from timm:
    model = dict(backbone=dict(type='TimmTrunk', name='mobilenetv4_conv_small', out_indices=(2, 3, 4)))

Importing this module registers :class:`MMDetMobileNetV3Trunk` and
:class:`MMDetTimmTrunk` in mmdet's ``MODELS`` registry under the names
``MobileNetV3Trunk`` and ``TimmTrunk``. Each takes the same arguments as the
package's trunk (:class:`mtmnv3.MobileNetV3Trunk`,
:class:`mtmnv3.backbone.TimmTrunk`), publishes the same ``feature_info`` and
returns a tuple of the ``out_indices`` stage outputs.

Pretrained weights load through mmengine's usual
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``, but with
the trunk's own loader (:mod:`mtmnv3.backbone.pretrained`) instead of
mmengine's ``PretrainedInit`` (which asserts on a prefix that matches
nothing, an assert that vanishes under ``python -O``, only logs missing or
mis-shaped keys, and loads nothing from a torchvision file): here loading is
strict by default, and a prefix that selects no key, missing trunk keys,
unexpected keys and shape mismatches raise with a message naming them.
Without a prefix the layout is recognised from the keys; typical prefixes:
``'trunk'`` for the package's multi-task checkpoints, ``'backbone'`` for an
mmdet detector trained with this trunk, and ``'features'`` for a torchvision
``mobilenet_v3_*`` state dict (ImageNet weights).

The core package never imports this module, so it works without mmdet.
"""

from __future__ import annotations

import os

from mtmnv3.backbone.pretrained import PRETRAINED_KEYS, PRETRAINED_TYPE, load_pretrained_trunk, select_prefix
from mtmnv3.backbone.timm_trunk import TimmTrunk
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.checkpoint import allow_mmengine_checkpoint_globals

try:
    from mmdet.registry import MODELS as MMDET_MODELS
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mtmnv3.backbone.mmdet_adapter needs MMDetection 3.x with a compiled mmcv: install it with "
        "`make mmdet` (or tools/install_mmdet.sh), which builds mmcv 2.1.0 for this torch"
    ) from exc

__all__ = [
    "MMDetMobileNetV3Trunk",
    "MMDetTimmTrunk",
    "PRETRAINED_KEYS",
    "PRETRAINED_TYPE",
    "load_trunk_weights",
    "select_prefix",
]

# Runner checkpoints (mmdet runs included, once this module is imported through
# ``custom_imports``) are written and read with torch's weights-only loading:
# plain data classes are allow-listed and mmengine's HistoryBuffer no longer
# pickles functions (the package's checkpoint policy, see mtmnv3.core.checkpoint).
allow_mmengine_checkpoint_globals()


def load_trunk_weights(
    trunk: MobileNetV3Trunk | TimmTrunk,
    checkpoint: str | os.PathLike,
    prefix: str | None = None,
    map_location: str | None = "cpu",
    strict: bool = True,
) -> None:
    """Load trunk weights from a checkpoint file, strictly by default.

    Args:
        trunk: the trunk to load into.
        checkpoint: a local file (read with ``torch.load(weights_only=True)``) or
            a URL mmengine's ``CheckpointLoader`` understands; a plain state
            dict or one under ``'state_dict'`` (mmengine Runner checkpoints
            included) or ``'model'``.
        prefix: module path of the trunk inside the checkpoint (``'trunk'``,
            ``'backbone'``, ``'features'``); ``None``: recognised from the keys.
        map_location: passed to ``torch.load``.
        strict: raise on missing or unexpected keys and on shape mismatches;
            ``False`` loads what matches and raises only when fewer than 95 %
            of the trunk's tensors do.

    A :class:`TimmTrunk` also reads a timm state dict of its model (prefix
    ``None`` or ``''``; the classifier's tensors are ignored).

    Raises:
        FileNotFoundError: the checkpoint file does not exist.
        ValueError: the file is unreadable, the prefix matches nothing, or keys
            or shapes do not match (another arch, width or SE setting).
    """
    if isinstance(trunk, TimmTrunk):
        trunk.load_pretrained(checkpoint, prefix=prefix, map_location=map_location, strict=strict)
        return
    load_pretrained_trunk(trunk, checkpoint, prefix=prefix, map_location=map_location, strict=strict)


@MMDET_MODELS.register_module(name="MobileNetV3Trunk")
class MMDetMobileNetV3Trunk(MobileNetV3Trunk):
    """:class:`mtmnv3.MobileNetV3Trunk` as an mmdet backbone (same arguments).

    ``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix='trunk')`` loads
    the trunk strictly from a checkpoint (see :func:`load_trunk_weights`; an
    optional ``strict=False`` loads when at least 95 % of the trunk's tensors
    match); without ``prefix`` a torchvision ``mobilenet_v3_*`` file, a
    multi-task checkpoint or an mmdet detector's is recognised from its keys.
    Other ``init_cfg`` types go to mmengine's initialisers as usual.
    """

    #: Pretrained ``init_cfg`` entries load strictly unless they set ``strict=False``.
    pretrained_strict_default = True


@MMDET_MODELS.register_module(name="TimmTrunk")
class MMDetTimmTrunk(TimmTrunk):
    """:class:`mtmnv3.backbone.TimmTrunk` as an mmdet backbone (same arguments).

    ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads a timm state dict
    of the model (its classifier ignored), a multi-task checkpoint or an mmdet
    detector's, strictly unless it sets ``strict=False``.
    """

    #: Pretrained ``init_cfg`` entries load strictly unless they set ``strict=False``.
    pretrained_strict_default = True
