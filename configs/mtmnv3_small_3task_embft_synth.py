# Re-train the embedding head of a trained three-task model (default: the checkpoint `make demo`
# writes) with everything else frozen, so the detections stay exactly the same and association can be
# compared on the embeddings alone. The head learns with the supervised contrastive loss inside videos:
# an object's other views are pulled together and the other objects of its video, the distractors the
# tracker has to tell it from, pushed away (batches of 4 videos x 8 frames).
_base_ = ["./mtmnv3_small_3task_synth.py"]
load_from = "work_dirs/demo/model.pth"
max_iters = 1500
model = dict(
    frozen=("trunk", "neck", "cls", "det"),
    loss_weighting=dict(_delete_=True, type="EqualWeighting"),
    task_weights=dict(emb=1.0),
    heads=dict(emb=dict(loss_type="contrastive", temperature=0.1)),
)
train_dataloader = dict(
    sampler=dict(_delete_=True, type="VideoGroupSampler", frames_per_group=8),
    dataset=dict(
        _delete_=True,
        type="SynthMultiTaskDataset",
        split="train",
        pipeline={{_base_.train_pipeline}},
        data_root="data/synth",
        image_size={{_base_.image_size}},
        num_objects=4,
        scene={{_base_.train_scene}},
        num_sequences=1500,  # the video part of the default training data
        num_frames=8,
        seed=0,
    ),
)
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
