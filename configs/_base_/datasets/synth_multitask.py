# The built-in default data: procedural multi-object scene videos, generated
# on first use under data/synth (cached; knobs hashed into the folder name).
# Train and val/test use disjoint sequences and object images (held out).
# Frames are 128 px: Fashion-MNIST objects are 28 px images, so larger frames
# only upsample them and cost training time. The network sees them letterboxed
# to 160 px (input_size): MobileNetV3's stride-2 stem and stride-4 first block
# blur 28 px objects at 128 px. Each scene has
# a "main subject" (larger, in front) so the frame label (the most visible
# object's class) is rarely a near-tie between two objects.
# Training mixes two parts of the same generator (mmengine's ConcatDataset):
# - videos: 1500 8-frame sequences with every label, so identities train the
#   embedding head with several views per identity (many short sequences give
#   many identities with two views each, and a larger identity classifier);
# - frames: 54000 more single frames labelled for classification and
#   detection only (tasks=("cls", "det")). What generalises is the number of
#   distinct object images seen: with the videos alone the classifier
#   memorises their main objects. Leaving identities out of the frames keeps
#   the identity classifier small.
# Each training sequence starts at a random time in its scene's first 28
# frames (start_offset), so training sees what held-out sequences show:
# objects entering, leaving and respawning, not only freshly placed scenes.
# Validation keeps 30-frame sequences for tracking; 96 of them, so that
# classification is measured on enough distinct main objects.
# Data loads in the training process (num_workers=0): on 2 cores a loader
# worker competes with the two compute threads.
# The measurements behind these choices: docs/design-notes.md.
image_size = 128
input_size = 160
synth_common = dict(
    data_root="data/synth",
    image_size=image_size,
    num_objects=4,
    scene=dict(object_scale=(0.2, 0.35), main_object_scale=(0.45, 0.6)),
)
train_scene = {**synth_common["scene"], "start_offset": 28}
train_pipeline = [
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
train_part = dict(
    type="SynthMultiTaskDataset",
    split="train",
    pipeline=train_pipeline,
    **{**synth_common, "scene": train_scene},
)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(
        type="ConcatDataset",
        ignore_keys=["videos"],  # each part lists its own videos
        datasets=[
            dict(**train_part, num_sequences=1500, num_frames=8, seed=0),
            dict(**train_part, num_sequences=54000, num_frames=1, seed=1, tasks=("cls", "det")),
        ],
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(
        type="SynthMultiTaskDataset",
        split="val",
        num_sequences=96,
        num_frames=30,
        seed=0,
        pipeline=test_pipeline,
        **synth_common,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type="Top1Accuracy"),
    dict(type="CocoDetMetric"),
]
test_evaluator = val_evaluator
