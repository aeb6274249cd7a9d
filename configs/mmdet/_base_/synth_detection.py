# Detection data: the package's built-in synthetic scenes in COCO format, read
# by mmdet's own CocoDataset, pipeline and CocoMetric.
#
# Produce the data once (deterministic from the seed; see configs/mmdet/README.md):
#   mtmnv3 make-synth --out data/synth/train --sequences 16 --frames 60 --size 320 \
#       --objects 6 --seed 0 --appearance sprites
#   mtmnv3 make-synth --out data/synth/val --sequences 4 --frames 60 --size 320 \
#       --objects 6 --seed 1 --appearance sprites
# Each folder holds annotations/coco.json with image paths relative to the folder.
# For your own COCO json, set the data roots, ann_file and metainfo=dict(classes=...).
dataset_type = "CocoDataset"
train_data_root = "data/synth/train/"
val_data_root = "data/synth/val/"
ann_file = "annotations/coco.json"
img_prefix = ""
# Category names of the generator's sprite appearance, in label order. With
# --appearance fashion_mnist use the Fashion-MNIST names ("t-shirt/top", "trouser", ...).
metainfo = dict(
    classes=(
        "circle",
        "square",
        "triangle",
        "ring",
        "cross",
        "star",
        "diamond",
        "hexagon",
        "crescent",
        "arrow",
    )
)
image_size = (320, 320)
backend_args = None

train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(
        type=dataset_type,
        data_root=train_data_root,
        ann_file=ann_file,
        data_prefix=dict(img=img_prefix),
        metainfo=metainfo,
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=val_data_root,
        ann_file=ann_file,
        data_prefix=dict(img=img_prefix),
        metainfo=metainfo,
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type="CocoMetric",
    ann_file=val_data_root + ann_file,
    metric="bbox",
    format_only=False,
    backend_args=backend_args,
)
test_evaluator = val_evaluator
