# mtmnv3_small_3task_robustft_augmixops_synth.py with the consistency term anchored on the clean view:
# each AugMix view's cls logits and det heatmap are pulled toward the clean view's prediction, held
# fixed (KL, not AugMix's symmetric Jensen-Shannon term), so the clean predictions are never pulled
# toward the corrupted ones.
_base_ = ["./mtmnv3_small_3task_robustft_augmixops_synth.py"]
model = dict(robust=dict(consistency=dict(anchor="clean")))
