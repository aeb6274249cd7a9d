# MobileNetV3-small trunk, heads: pedestrian detection + re-ID embedding (FairMOT-style); MOT17, 6000 iterations.
# Data layout, protocol and the train / test / submit commands: docs/own-data/mot17.md.
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/datasets/mot17.py",
]
num_ids = {{_base_.num_ids}}
model = dict(
    type="MultiTaskPerceptor",
    trunk=dict(type="MobileNetV3Trunk", arch="small", zero_init_residual=True),
    neck=dict(type="FPNLite", strides=(8, 16, 32), out_channels=64, num_outs=1),
    # The identity loss starts at log(num_ids) and would dwarf detection's.
    task_weights=dict(emb=0.5),
    heads=dict(
        det=dict(type="CenterDetHead", num_classes=1, feat_channels=64, branch_conv="separable"),
        emb=dict(
            type="EmbeddingHead", num_ids=num_ids, embed_dim=64, feat_channels=64, branch_conv="separable"
        ),
    ),
)
# Iterations, not epochs: 6000 x 16 frames is about 36 passes over the ~2.7k frames of the
# training halves (FairMOT trains 30 epochs on MOT17 alone). Validation every 2000 and at the end.
max_iters = 6000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=2000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=300, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=2000))
# Tracker of `mtmnv3 test --track` (frame rate from each sequence's seqinfo.ini): ByteTrack's
# thresholds with appearance; untuned on MOT17 (`mtmnv3 calibrate-tracker --mot-dir` tunes it).
tracker = dict(type="EmbeddingTracker")
