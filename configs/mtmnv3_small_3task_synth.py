# MobileNetV3-small trunk, heads: classification + detection + re-ID embedding; built-in synthetic data, 19200 iterations (the shipped model).
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/schedules/iter_19200.py",
    "./_base_/datasets/synth_multitask.py",
    "./_base_/models/heads_synth.py",
]
model = dict(
    type="MultiTaskPerceptor",
    channels_last=True,  # NHWC convolutions: faster CPU training steps (benchmarks/train_throughput.py)
    trunk=dict(
        type="MobileNetV3Trunk", arch="small", zero_init_residual=True
    ),  # residual blocks start as identity
    neck={{_base_.neck}},
    task_weights={{_base_.task_weights}},
    # FAMO (Liu et al., NeurIPS 2023) balances the task losses: it kept classification at equal
    # weights' level and improved detection and tracking at about the same step time
    # (benchmarks/loss_balancing.py; docs/design-notes.md).
    loss_weighting=dict(type="FAMO"),
    heads=dict(cls={{_base_.cls_head}}, det={{_base_.det_head}}, emb={{_base_.emb_head}}),
)
val_evaluator = [dict(type="Top1Accuracy"), dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
