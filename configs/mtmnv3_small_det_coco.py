# MobileNetV3-small trunk, heads: detection; COCO 2017 (or any data in the COCO layout), 90k iterations.
# Layout, class subsets and roots: configs/_base_/datasets/coco.py and docs/own-data/coco.md.
# ImageNet initialisation from a local torchvision file (written on a machine with internet,
# see docs/own-data/coco.md):
#   --cfg-options "model.trunk.init_cfg=dict(type='Pretrained', checkpoint=mobilenet_v3_small.pth)"
# The schedule and learning rate are starting points, not tuned on COCO.
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/datasets/coco.py",
]
num_det_classes = 80  # COCO's categories; K for a subset of K classes
model = dict(
    type="MultiTaskPerceptor",
    channels_last=True,  # NHWC convolutions: faster CPU training steps (benchmarks/train_throughput.py)
    trunk=dict(type="MobileNetV3Trunk", arch="small", zero_init_residual=True),
    neck=dict(type="FPNLite", strides=(8, 16, 32), out_channels=64, num_outs=1),
    heads=dict(
        det=dict(type="CenterDetHead", num_classes=num_det_classes, feat_channels=64, branch_conv="separable")
    ),
)
# Trained by iterations (`--cfg-options train_cfg.max_iters=N` shortens a run); at batch 32,
# 90k iterations are about 25 passes over COCO train2017. Validation every 5000 and at the end.
max_iters = 90000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=5000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=1000, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=5000), logger=dict(interval=50))
