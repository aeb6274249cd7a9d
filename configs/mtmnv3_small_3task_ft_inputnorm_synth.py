# Fine-tuning control (mtmnv3_small_3task_ft_synth.py) with per-image input standardisation before the trunk: each image's channels are standardised by their own mean and deviation, so brightness and contrast changes cancel.
# The stem option of every trunk (`model.trunk.input_norm`, mtmnv3/backbone/input_norm.py); the input
# normalisation study (benchmarks/input_norm_study.py, docs/robustness.md) compares it with the control
# and with robust fine-tuning at the same number of iterations.
_base_ = ["./mtmnv3_small_3task_ft_synth.py"]
model = dict(trunk=dict(input_norm="per_image"))
