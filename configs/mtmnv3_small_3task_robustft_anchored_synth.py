# Robust fine-tuning (mtmnv3_small_3task_robustft_synth.py) with two changes:
# - AugMix severity <= 5, drawing from the five shift-suite families it uses (brightness, contrast,
#   color_cast, defocus_blur, gaussian_noise) and from AugMix's photometric ops that are not suite
#   families (autocontrast, equalize, posterize, solarize, sharpness): more kinds of op, the same six
#   families held out for the shift suite;
# - the consistency term anchored on the clean view: each AugMix view's cls logits and det heatmap are
#   pulled toward the clean view's prediction, held fixed (KL, not AugMix's symmetric Jensen-Shannon
#   term), so the clean predictions are never pulled toward the corrupted ones.
_base_ = ["./mtmnv3_small_3task_robustft_synth.py"]
model = dict(
    robust=dict(
        consistency=dict(
            severity=5,
            ops=(
                "brightness",
                "contrast",
                "color_cast",
                "defocus_blur",
                "gaussian_noise",
                "autocontrast",
                "equalize",
                "posterize",
                "solarize",
                "sharpness",
            ),
            anchor="clean",
        ),
    ),
)
