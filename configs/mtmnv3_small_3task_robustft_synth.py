# Robust fine-tuning: the checkpoint `make demo` writes, fine-tuned for 1200 iterations (as
# mtmnv3_small_3task_ft_synth.py, the control) with AugMix consistency (Hendrycks et al., ICLR 2020):
# two AugMix views per batch, the task losses on all three views (every op preserves the labels) and a
# Jensen-Shannon term on the cls logits and the det heatmap. An iteration costs about three
# forward/backward passes of the control's. AugMix draws from brightness, contrast, color_cast,
# defocus_blur and gaussian_noise (severity <= 3); the other six families stay held out for the shift
# suite (`mtmnv3 robustness` reports mCE_seen / mCE_unseen).
_base_ = ["./mtmnv3_small_3task_ft_synth.py"]
model = dict(
    type="RobustMultiTaskPerceptor",
    robust=dict(
        consistency=dict(
            weight=12.0,  # AugMix's lambda
            severity=3,
            heads=("cls", "det"),
            ops=("brightness", "contrast", "color_cast", "defocus_blur", "gaussian_noise"),
            task_loss_views="all",
        ),
    ),
)
