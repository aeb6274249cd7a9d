# The built-in default data: procedural multi-object scene videos, generated
# on first use under data/synth (cached; knobs hashed into the folder name).
# Train and val/test use disjoint sequences and object images (held out).
# Training uses many short sequences: what generalises is the number of
# distinct object images seen (16 long sequences hold only ~100 and the model
# memorises them), while identities still persist over several frames for
# the embedding loss. Validation keeps long sequences for tracking.
image_size = 192
synth_common = dict(
    data_root="data/synth",
    image_size=image_size,
    num_objects=4,
)
train_pipeline = [
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    dict(type="Letterbox", size=image_size),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="Letterbox", size=image_size),
    dict(type="PackMultiTaskInputs"),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(
        type="SynthMultiTaskDataset",
        split="train",
        num_sequences=400,
        num_frames=6,
        seed=0,
        pipeline=train_pipeline,
        **synth_common,
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
        num_sequences=8,
        num_frames=60,
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
