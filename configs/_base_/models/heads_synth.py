# Head and neck settings for the built-in data: 10 object classes (Fashion-MNIST
# categories or procedural shapes) and 11 frame classes (the main object's
# class, or "no object").
num_det_classes = 10
num_cls_classes = 11
num_ids = 4096  # > identities in the train split (dataset-unique ids 1..N)
neck = dict(type="FPNLite", strides=(8, 16, 32), out_channels=64, num_outs=1)
cls_head = dict(type="ClsHead", num_classes=num_cls_classes, hidden_channels=256, dropout=0.1)
det_head = dict(type="CenterDetHead", num_classes=num_det_classes, feat_channels=64)
emb_head = dict(type="EmbeddingHead", num_ids=num_ids, embed_dim=64, feat_channels=64)
