# MobileNetV3-large trunk, heads: classification + detection + re-ID embedding; built-in synthetic data, 4800 iterations.
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
        type="MobileNetV3Trunk", arch="large", zero_init_residual=True
    ),  # residual blocks start as identity
    neck={{_base_.neck}},
    task_weights={{_base_.task_weights}},
    heads=dict(cls={{_base_.cls_head}}, det={{_base_.det_head}}, emb={{_base_.emb_head}}),
)
val_evaluator = [dict(type="Top1Accuracy"), dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
