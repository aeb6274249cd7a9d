# Detection data: the package's built-in synthetic scenes in COCO format, read
# by mmdet's own CocoDataset, pipeline and CocoMetric.
#
# Produce the data once (deterministic from the seed) with
#   python tools/make_synth.py --out data/synth --sequences 8 --frames 40 --size 320 --objects 6 --seed 0
# (see configs/mmdet/README.md), or point `data_root`/`ann_file` at any COCO
# json of your own together with `metainfo=dict(classes=...)`.
dataset_type = "CocoDataset"
data_root = "data/synth/"
ann_file = "annotations/train.json"
val_ann_file = "annotations/val.json"
img_prefix = ""
# Category names as the generator writes them into the COCO json (order = label index).
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
        data_root=data_root,
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
        data_root=data_root,
        ann_file=val_ann_file,
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
    ann_file=data_root + val_ann_file,
    metric="bbox",
    format_only=False,
    backend_args=backend_args,
)
test_evaluator = val_evaluator
