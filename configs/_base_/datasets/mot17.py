# MOT17 from the MOTChallenge download, unchanged: ROOT/{train,test}/SEQ/{img1/*.jpg, gt/gt.txt, seqinfo.ini}
# (test sequences have no gt/). Set ROOT with
#   --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR \
#                 test_dataloader.dataset.data_root=DIR
# Protocol (docs/own-data/mot17.md): pedestrians (class 1) are trained and evaluated; person on
# vehicle, static person, distractor and reflection (2, 7, 8, 12) are ignore regions; vehicles and
# occluders are not used; consider=0 boxes are ignore regions. One copy of each sequence (the
# -FRCNN folder; -DPM and -SDP hold the same frames). Training uses the first half of every
# training sequence, validation the second half (FairMOT/ByteTrack's half split).
data_root = "data/MOT17"
# Frames are 1920x1080 (MOT17-05 and -06: 640x480): a rectangular letterbox keeps the aspect with
# little padding. (width, height), multiples of 32.
input_size = (640, 352)
# The identity classifier's size: more than the training identities (MOT17 has ~550 pedestrians
# over its seven training sequences; the loader logs the count). The dataset refuses to load when
# the split has more (its num_ids check); change both together.
num_ids = 1024
mot17 = dict(
    type="MOTChallengeDataset",
    data_root=data_root,
    split="train",
    protocol="mot17",
    classes=("pedestrian",),
    prefer_detector="FRCNN",
    min_visibility=0.0,  # e.g. 0.25 makes mostly hidden people ignore regions
)
train_pipeline = [
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [
    dict(type="Letterbox", size=input_size),
    dict(type="PackMultiTaskInputs"),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=4,  # full-HD JPEG decoding; 0 on a two-core machine
    persistent_workers=True,
    # iteration-based training: one endless shuffled stream (mmengine pauses at every restart of a
    # DefaultSampler's epoch)
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(**mot17, half="first", num_ids=num_ids, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(**mot17, half="second", pipeline=test_pipeline),
)
# The validation half; for the benchmark's test split (no ground truth, result files only):
#   --cfg-options test_dataloader.dataset.split=test test_dataloader.dataset.half=None
# (with_gt=None: sequences without gt/gt.txt load without annotations).
test_dataloader = {
    **val_dataloader,
    "dataset": dict(**mot17, half="second", with_gt=None, pipeline=test_pipeline),
}
val_evaluator = [dict(type="CocoDetMetric")]
test_evaluator = val_evaluator
