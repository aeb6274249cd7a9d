# Robust fine-tuning (mtmnv3_small_3task_robustft_synth.py: AugMix consistency, severity <= 3) with per-image input standardisation before the trunk, as in mtmnv3_small_3task_ft_inputnorm_synth.py.
# Brightness and contrast cancel in the stem; AugMix's views train the rest (blur, noise, colour cast)
# and the held-out families. Compared by benchmarks/input_norm_study.py (docs/robustness.md).
_base_ = ["./mtmnv3_small_3task_robustft_synth.py"]
model = dict(trunk=dict(input_norm="per_image"))
