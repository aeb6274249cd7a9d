# mtmnv3_small_3task_robustft_anchored_synth.py with the task losses on the clean view only (AugMix's
# recipe): the clean view is trained exactly as the control trains it, and the AugMix views only learn,
# through the anchored consistency term, to predict what the clean view predicts (self-distillation
# from the clean view).
_base_ = ["./mtmnv3_small_3task_robustft_anchored_synth.py"]
model = dict(robust=dict(consistency=dict(task_loss_views="clean")))
