"""Robustness study: the shift suite (corruptions), adversarial attacks, robust training.

* :mod:`mtmnv3.data.corruptions`: eleven corruption families x five severities
  (Hendrycks & Dietterich 2019), consistent across the frames of a video;
* :mod:`mtmnv3.data.corrupt_transforms`: ``CorruptFrames``, the pipeline transform (registered
  in ``TRANSFORMS``);
* :mod:`.attacks`: FGSM / PGD in pixel space against one head or the trunk;
* :mod:`mtmnv3.models.dro`: group DRO weights (Sagawa et al. 2020) and AugMix with its
  Jensen-Shannon consistency loss (Hendrycks et al. 2020);
* :mod:`.evaluate`: the study: every task's metric clean, per corruption x
  severity (mCE, relative robustness) and under attacks (cross-task transfer);
  ``tools/robustness.py`` is its command line;
* :mod:`mtmnv3.models.robust`: ``RobustMultiTaskPerceptor`` (registered in
  ``MODELS``), training with AugMix consistency and/or group DRO.
"""
