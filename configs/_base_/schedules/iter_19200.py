# 19200 iterations (the shipped default model's schedule), AdamW with linear warm-up then cosine decay; validation at the end.
max_iters = 19200
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=3e-3, weight_decay=1e-4, fused=True),  # fused AdamW: faster CPU steps
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=150),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=150, end=max_iters, eta_min=1e-5),
]
