# FCOS with the MobileNetV3-Large trunk, mmdet's FPN and FCOSHead,
# 12 epochs on the synthetic COCO-format scenes.
_base_ = ["./_base_/synth_detection.py", "./_base_/default_runtime.py"]

# The two lines that put the trunk into an mmdet detector:
custom_imports = dict(imports=["mtmnv3.backbone.mmdet_adapter"], allow_failed_imports=False)
backbone = dict(type="MobileNetV3Trunk", arch="large", out_indices=(2, 3, 4))

num_classes = 10
model = dict(
    type="FCOS",
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    backbone=backbone,
    # in_channels = the trunk's feature_info channels of stages 2, 3, 4 (strides 8, 16, 32).
    neck=dict(
        type="FPN",
        in_channels=[40, 112, 960],
        out_channels=128,
        start_level=0,
        add_extra_convs="on_output",
        num_outs=5,
        relu_before_extra_convs=True,
    ),
    bbox_head=dict(
        type="FCOSHead",
        num_classes=num_classes,
        in_channels=128,
        stacked_convs=2,
        feat_channels=128,
        strides=[8, 16, 32, 64, 128],
        norm_cfg=dict(type="GN", num_groups=16, requires_grad=True),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.6),
        max_per_img=100,
    ),
)

max_epochs = 12
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
param_scheduler = [
    dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0, end=200),
    dict(type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=4e-5),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=35, norm_type=2),
)
auto_scale_lr = dict(enable=False, base_batch_size=8)
