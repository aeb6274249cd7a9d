# COCO detection data in the COCO json layout: train2017 trains, val2017 validates and tests.
# The layout (mmdet's CocoDataset arguments):
#   ROOT/annotations/instances_train2017.json   ROOT/train2017/*.jpg
#   ROOT/annotations/instances_val2017.json     ROOT/val2017/*.jpg
# Any dataset in this layout works (one json per split, images in one folder
# per split; file_name relative to it). Point every split at your root:
#   --cfg-options train_dataloader.dataset.data_root=DIR \
#       val_dataloader.dataset.data_root=DIR test_dataloader.dataset.data_root=DIR
# Crowd annotations (iscrowd=1) are ignore regions: not trained as
# positives, not counted as misses. `classes` keeps a subset of categories by
# name, labelled 0..K-1 in the order given (other categories are dropped and
# counted in a warning); set the same subset on every split and
# model.heads.det.num_classes=K (docs/own-data/coco.md).
# Images are letterboxed (aspect kept, padded) to input_size.
data_root = "data/coco/"
classes = None  # all categories of the json, in category-id order
input_size = 320
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
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(
        type="CocoDetDataset",
        data_root=data_root,
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        classes=classes,
        # training skips images without a (non-crowd) box of the kept classes
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(
        type="CocoDetDataset",
        data_root=data_root,
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017/"),
        classes=classes,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader  # COCO's test split has no public labels: test on val, as mmdet does
# ground truth from the samples (crowds as ignore regions), so class subsets score correctly
val_evaluator = [dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
