# Fine-tune a trained three-task model (default: the checkpoint `make demo` writes) for 1200 more
# iterations of the default recipe at a lower learning rate: the control for
# mtmnv3_small_3task_robustft_synth.py, which fine-tunes the same checkpoint for the same iterations
# with distributionally robust training (the robustness study compares the two).
_base_ = ["./mtmnv3_small_3task_synth.py"]
load_from = "work_dirs/demo/model.pth"
max_iters = 1200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
