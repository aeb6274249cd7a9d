# Robust fine-tuning (mtmnv3_small_3task_robustft_synth.py) with ten times the Jensen-Shannon weight
# on the detection heatmap. The heatmap's JS term is a mean over every cell and class, mostly
# background, so at AugMix's lambda = 12 it stayed ~0.01 against a heatmap loss of ~0.7 (the
# classification term was ~0.13); at 120 the two consistency terms are of one size.
_base_ = ["./mtmnv3_small_3task_robustft_synth.py"]
model = dict(robust=dict(consistency=dict(weight=dict(_delete_=True, cls=12.0, det=120.0))))
