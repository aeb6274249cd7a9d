# Runtime shared by every experiment: mmengine hooks, logging, environment.
default_scope = "mtmnv3"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=25),  # logs loss, lr and ETA
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook",
        by_epoch=False,
        interval=500,
        max_keep_ckpts=2,
        save_last=True,
        backend_args=dict(backend="atomic_local"),  # temp file + rename
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# progress bar and metrics table at evaluation; loss_weights.png in the work dir after training;
# every checkpoint records its training data (meta["train_data"])
custom_hooks = [
    dict(type="EvalProgressHook"),
    dict(type="LossWeightsPlotHook"),
    dict(type="TrainDataRecordHook"),
]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)
log_processor = dict(type="LogProcessor", window_size=25, by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
