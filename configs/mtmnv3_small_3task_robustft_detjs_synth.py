# Robust fine-tuning (mtmnv3_small_3task_robustft_synth.py) with ten times the Jensen-Shannon weight
# on the detection heatmap. The heatmap's JS term is a mean over every cell and class, mostly
# background, so at AugMix's lambda it stays far below the heatmap loss and the classification
# term; ten times the weight brings the two consistency terms to one size.
_base_ = ["./mtmnv3_small_3task_robustft_synth.py"]
model = dict(robust=dict(consistency=dict(weight=dict(_delete_=True, cls=12.0, det=120.0))))
