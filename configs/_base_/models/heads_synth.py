# Head and neck settings for the built-in data: 10 object classes (Fashion-MNIST
# categories or procedural shapes) and 11 frame classes (the main object's
# class, or "no object").
num_det_classes = 10
num_cls_classes = 11
num_ids = 8192  # more than the identities of the train split (dataset-unique ids 1..N)
# The identity loss (log num_ids at the start) dwarfs the others; halving it
# helped classification and detection on the built-in data.
task_weights = dict(emb=0.5)
neck = dict(type="FPNLite", strides=(8, 16, 32), out_channels=64, num_outs=1)
# object_loss_weight: every labelled object's class also trains the frame
# classifier, read at the object's centre on the classifier's tap (frames label
# one object, scenes hold four); it helped both tasks (docs/design-notes.md).
cls_head = dict(
    type="ClsHead", num_classes=num_cls_classes, hidden_channels=256, dropout=0.1, object_loss_weight=1.0
)
# Depthwise-separable 3x3 convs in the dense branches (SSDLite-style): faster
# training steps than full 3x3 convs (benchmarks/train_throughput.py).
# Adopted together with 160 px input and the 8192-id classifier (both tasks
# improved); its accuracy effect on its own was not measured.
det_head = dict(type="CenterDetHead", num_classes=num_det_classes, feat_channels=64, branch_conv="separable")
emb_head = dict(
    type="EmbeddingHead", num_ids=num_ids, embed_dim=64, feat_channels=64, branch_conv="separable"
)
# Tracker used by `mtmnv3 test --track` and `mtmnv3 demo`. Tuned on the
# validation split: the detector's scores sit lower than ByteTrack's defaults
# assume, and the 0.95 chi-square motion gate rejected many true matches of
# boxes whose aspect and height jitter, so the gate only rejects implausible
# jumps, and it tests the box centre alone (fewer ID switches than the full
# 4-D gate, most with fast objects: docs/design-notes.md). BoT-SORT's Kalman
# state (centre, width, height) places boxes better than the aspect-ratio state,
# and with it the weighted fusion of IoU and appearance beat the min-fusion and
# BoxMOT's trackers on the model's detections (docs/tracking.md, "the peers").
tracker = dict(
    type="EmbeddingTracker",
    high_thr=0.4,
    new_track_thr=0.5,
    low_thr=0.1,
    kalman="xywh",
    fusion="weighted",
    gate_thr=50.0,
    gate_position_only=True,
)
