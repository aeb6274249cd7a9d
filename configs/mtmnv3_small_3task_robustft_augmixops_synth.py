# Robust fine-tuning with AugMix's own ops added: mtmnv3_small_3task_robustft_synth.py at AugMix severity
# <= 5, drawing from the five shift-suite families it uses (brightness, contrast, color_cast,
# defocus_blur, gaussian_noise) and from AugMix's photometric ops that are not suite families
# (autocontrast, equalize, posterize, solarize, sharpness). More kinds of op, the same six families
# held out for the shift suite.
_base_ = ["./mtmnv3_small_3task_robustft_synth.py"]
model = dict(
    robust=dict(
        consistency=dict(
            severity=5,
            ops=(
                "brightness", "contrast", "color_cast", "defocus_blur", "gaussian_noise",
                "autocontrast", "equalize", "posterize", "solarize", "sharpness",
            ),
        ),
    ),
)
