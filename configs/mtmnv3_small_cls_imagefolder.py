# MobileNetV3-small trunk, heads: classification; an ImageFolder tree (ROOT/{train,val}/CLASS/*.jpg), 20k iterations.
# Layout, classes and roots: configs/_base_/datasets/imagefolder.py and docs/own-data/imagefolder.md.
# Set the head to the number of class folders: --cfg-options model.heads.cls.num_classes=K
# ImageNet initialisation from a local torchvision file (written on a machine with internet,
# see docs/own-data/imagefolder.md):
#   --cfg-options "model.trunk.init_cfg=dict(type='Pretrained', checkpoint=mobilenet_v3_small.pth)"
# The schedule and learning rate are starting points, not tuned on any one dataset.
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/datasets/imagefolder.py",
]
num_cls_classes = 10  # the number of class folders (or of `classes`)
model = dict(
    type="MultiTaskPerceptor",
    channels_last=True,  # NHWC convolutions: faster CPU training steps (benchmarks/train_throughput.py)
    trunk=dict(type="MobileNetV3Trunk", arch="small", zero_init_residual=True),
    # torchvision's mobilenet_v3_small classifier: a 1024-wide layer after pooling, dropout 0.2
    heads=dict(cls=dict(type="ClsHead", num_classes=num_cls_classes, hidden_channels=1024, dropout=0.2)),
)
# Trained by iterations (`--cfg-options train_cfg.max_iters=N` shortens a run); validation
# every 2000 and at the end.
max_iters = 20000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=2000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=500, end=max_iters, eta_min=1e-6),
]
default_hooks = dict(checkpoint=dict(interval=2000), logger=dict(interval=50))
