"""Data: the procedural scene generator and loaders for real formats.

Importing this package registers every dataset (in ``DATASETS``) and
transform (in ``TRANSFORMS``) of the package.
"""

from mtmnv3.data.common import (
    SCENE_META_KEYS,
    TASKS,
    DataError,
    MultiTaskBaseDataset,
    build_pipeline,
    read_image_rgb,
)
from mtmnv3.data.corrupt_transforms import CorruptFrames
from mtmnv3.data.datasets import (
    ClassificationListDataset,
    CocoDetDataset,
    ImageFolderDataset,
    MOTChallengeDataset,
    MultiTaskDataset,
)
from mtmnv3.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FashionMNISTDataset,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from mtmnv3.data.mot import (
    MOT17_CLASSES,
    mot17_class_map,
    mot_to_xyxy,
    read_mot_gt,
    read_seqinfo,
    xyxy_to_mot,
)
from mtmnv3.data.motchallenge import MotSequence, find_mot_sequences, mot_sequences
from mtmnv3.data.samplers import VideoGroupSampler, video_groups
from mtmnv3.data.sprites import SPRITE_CLASSES, AppearanceSource, resolve_appearance
from mtmnv3.data.synth import (
    DOMAINS,
    NO_OBJECT_CLASS_NAME,
    SceneConfig,
    SynthFrame,
    cls_class_names,
    generate_sequence,
    sequence_meta,
)
from mtmnv3.data.synth_io import (
    SPLITS,
    SynthMultiTaskDataset,
    ensure_synth_dataset,
    render_preview,
    write_synth_dataset,
)
from mtmnv3.data.transforms import ColorJitter, Letterbox, PackMultiTaskInputs, RandomCrop, RandomFlip, Resize

__all__ = [
    "CorruptFrames",
    "VideoGroupSampler",
    "video_groups",
    "AppearanceSource",
    "ClassificationListDataset",
    "CocoDetDataset",
    "ColorJitter",
    "DOMAINS",
    "DataError",
    "FASHION_MNIST_CLASSES",
    "FashionMNISTDataset",
    "ImageFolderDataset",
    "Letterbox",
    "MOT17_CLASSES",
    "MOTChallengeDataset",
    "MotSequence",
    "MultiTaskBaseDataset",
    "MultiTaskDataset",
    "NO_OBJECT_CLASS_NAME",
    "PackMultiTaskInputs",
    "RandomCrop",
    "RandomFlip",
    "Resize",
    "SCENE_META_KEYS",
    "SPLITS",
    "SPRITE_CLASSES",
    "SceneConfig",
    "SynthFrame",
    "SynthMultiTaskDataset",
    "TASKS",
    "build_pipeline",
    "cls_class_names",
    "ensure_synth_dataset",
    "find_fashion_mnist",
    "find_mot_sequences",
    "generate_sequence",
    "load_fashion_mnist",
    "mot17_class_map",
    "mot_sequences",
    "mot_to_xyxy",
    "read_idx",
    "read_image_rgb",
    "read_mot_gt",
    "read_seqinfo",
    "render_preview",
    "resolve_appearance",
    "sequence_meta",
    "write_synth_dataset",
    "xyxy_to_mot",
]
