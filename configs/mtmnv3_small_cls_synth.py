# MobileNetV3-small trunk, heads: classification; built-in synthetic data, 4800 iterations.
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/schedules/iter_4800.py",
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
    heads=dict(cls={{_base_.cls_head}}),
)
val_evaluator = [dict(type="Top1Accuracy")]
test_evaluator = val_evaluator
