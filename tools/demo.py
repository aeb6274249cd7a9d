"""Live tracking demo: webcam or video -> multi-task model -> tracker -> overlay.

Usage:
    python tools/demo.py --config CONFIG --checkpoint CKPT (--camera-id N | --video PATH)
        [--backend torch|onnxruntime] [--budget-ms MS] [--policy adaptive|greedy|fixed]
        [--size 320] [--resolutions 320,256,192] [--threads 2] [--cls-period 10]
        [--out video.mp4] [--mot-out results.txt] [--summary-json summary.json]
        [--budget-log budget.json] [--iou-only] [--show] [--max-frames N]

Bad input (a camera that cannot be opened, a missing or unreadable video, a
missing checkpoint, ``--show`` without a display) prints ``error: ...`` and
exits with status 2; outputs are written atomically, so a failed run leaves
no half-written files.
"""

from __future__ import annotations

import sys

from mtmnv3.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
