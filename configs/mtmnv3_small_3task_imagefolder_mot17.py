# MobileNetV3-small trunk, heads: image classification (an ImageFolder tree) + pedestrian detection
# and re-ID embedding (MOT17), one trunk; 6000 iterations. docs/own-data/mot17.md, "Three tasks".
# Classification data: CLS_ROOT/{train,val}/<class name>/<image> (one folder per class, sorted names
# are the labels). Set the roots with
#   --cfg-options train_dataloader.dataset.datasets.0.data_root=CLS_ROOT \
#                 train_dataloader.dataset.datasets.1.data_root=MOT17 \
#                 (val_dataloader and test_dataloader likewise)
# and model.heads.cls.num_classes to the number of class folders.
_base_ = ["./mtmnv3_small_detemb_mot17.py"]
input_size = {{_base_.input_size}}
num_cls_classes = 10
cls_data_root = "data/imagefolder"
model = dict(
    # FAMO balances the three task losses (as the synthetic 3-task config).
    loss_weighting=dict(type="FAMO"),
    heads=dict(
        # object_loss_weight stays 0: detected objects (pedestrians) are not classification classes.
        cls=dict(type="ClsHead", num_classes=num_cls_classes, hidden_channels=256, dropout=0.1),
    ),
)
# Classification images are letterboxed to the frames' size, so every batch mixes same-size
# images and training sees classification images as test time does.
cls_train_pipeline = [
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
cls_test_pipeline = [
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
# The ImageFolder part comes first: a ConcatDataset takes the first part's metainfo, and its
# metainfo names the detection classes (classes) and the classification classes (cls_classes).
cls_part = dict(type="ImageFolderDataset", data_root=cls_data_root, metainfo=dict(classes=("pedestrian",)))
# Parts mix in proportion to their sizes (shuffled together); a large classification set can be
# subsampled, or the MOT17 part repeated, to balance them.
concat = dict(type="ConcatDataset", ignore_keys=["cls_classes", "videos", "num_ids"])
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **concat,
        datasets=[
            dict(**cls_part, data_prefix=dict(img_path="train"), pipeline=cls_train_pipeline),
            {{_base_.train_dataloader.dataset}},
        ],
    )
)
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **concat,
        datasets=[
            dict(**cls_part, data_prefix=dict(img_path="val"), pipeline=cls_test_pipeline),
            {{_base_.val_dataloader.dataset}},
        ],
    )
)
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **concat,
        datasets=[
            dict(**cls_part, data_prefix=dict(img_path="val"), pipeline=cls_test_pipeline),
            {{_base_.test_dataloader.dataset}},
        ],
    )
)
val_evaluator = [dict(type="Top1Accuracy"), dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
