"""The main job behind ``make demo``: train (or reuse) the default three-task
model, evaluate it (classification, detection, MOT), run the budgeted
tracking demo on a held-out video, and write ``work_dirs/demo/report.md``.

Usage:
    python tools/demo_job.py [--config CONFIG] [--work-dir work_dirs/demo] [--budget-ms 33]
                             [--backend onnxruntime|torch] [--frames 300] [--video-size 256]
                             [--seed 7] [--cfg-options ...]
"""

from __future__ import annotations

import sys

from mtmnv3.cli.demo_job import main

if __name__ == "__main__":
    sys.exit(main())
