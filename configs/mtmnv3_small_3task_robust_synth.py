# MobileNetV3-small 3-task model (cls + det + emb) with distributionally robust training on the
# built-in synthetic data, 4800 iterations: AugMix consistency (Hendrycks et al., ICLR 2020) with a
# Jensen-Shannon term on the cls logits and the det heatmap, plus group DRO over the scenes'
# background domains (Sagawa et al., ICLR 2020). Each batch runs three views (clean + 2 AugMix), so an
# iteration costs about three forward/backward passes of the plain config.
# AugMix draws from brightness, contrast, color_cast, defocus_blur, gaussian_noise (severity <= 3);
# darkness, gamma, low_resolution, motion_blur, shot_noise and jpeg_compression stay held out for the
# shift suite (`mtmnv3 robustness` reports mCE_seen / mCE_unseen).
_base_ = ["./mtmnv3_small_3task_synth.py"]
model = dict(
    type="RobustMultiTaskPerceptor",
    robust=dict(
        consistency=dict(
            weight=12.0,  # AugMix's lambda
            severity=3,
            heads=("cls", "det"),
            ops=("brightness", "contrast", "color_cast", "defocus_blur", "gaussian_noise"),
        ),
        group_dro=dict(
            eta=0.01,  # Sagawa et al.'s step size
            group_key="domain",
            groups=("smooth", "stripes", "checker", "blobs", "speckle"),
        ),
    ),
)
