# RepViT-M0.9 trunk (timm `repvit_m0_9`) in place of MobileNetV3-small, heads: classification + detection + re-ID embedding; built-in synthetic data, 19200 iterations (the default recipe).
#
# Only model.trunk differs from ../mtmnv3_small_3task_synth.py: the same neck, heads, loss
# weighting, data, schedule and seeds; the neck and heads read the trunk's channels and strides
# from its feature_info. The trunk starts from timm's own random initialisation, as the default
# trains MobileNetV3 from scratch (docs/successors.md: selecting, pretrained weights, measuring).
_base_ = ["../mtmnv3_small_3task_synth.py"]
model = dict(trunk=dict(_delete_=True, type="TimmTrunk", name="repvit_m0_9"))
