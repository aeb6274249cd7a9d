# MobileNetV3-large trunk, heads: classification + detection + re-ID embedding; built-in synthetic data, 3000 iterations.
_base_ = [
    "./_base_/default_runtime.py",
    "./_base_/schedules/iter_3000.py",
    "./_base_/datasets/synth_multitask.py",
    "./_base_/models/heads_synth.py",
]
model = dict(
    type="MultiTaskPerceptor",
    trunk=dict(type="MobileNetV3Trunk", arch="large"),
    neck={{_base_.neck}},
    task_weights={{_base_.task_weights}},
    heads=dict(cls={{_base_.cls_head}}, det={{_base_.det_head}}, emb={{_base_.emb_head}}),
)
val_evaluator = [dict(type="Top1Accuracy"), dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
