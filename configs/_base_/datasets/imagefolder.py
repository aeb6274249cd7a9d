# Classification data in the ImageFolder layout, one root for every split: train trains, val validates and tests.
# The layout:
#   ROOT/train/<class name>/*.jpg
#   ROOT/val/<class name>/*.jpg
# Classes are the folder names, sorted (or `classes`, in label order); give the
# head as many classes: model.heads.cls.num_classes=K (docs/own-data/imagefolder.md).
# Point every split at your root:
#   --cfg-options train_dataloader.dataset.data_root=DIR \
#       val_dataloader.dataset.data_root=DIR test_dataloader.dataset.data_root=DIR
# Images are letterboxed (aspect kept, padded) to input_size.
data_root = "data/imagefolder/"
classes = None  # every class folder, sorted
input_size = 224
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
        type="ImageFolderDataset",
        data_root=data_root,
        data_prefix=dict(img_path="train"),
        classes=classes,
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
        type="ImageFolderDataset",
        data_root=data_root,
        data_prefix=dict(img_path="val"),
        classes=classes,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type="Top1Accuracy")]
test_evaluator = val_evaluator
