"""``mtmnv3 train`` as a script (kept for mmdet-style ``python tools/train.py ...`` and torchrun)."""

import sys

from mtmnv3.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
