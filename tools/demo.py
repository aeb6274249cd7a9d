"""``mtmnv3 demo`` as a script (kept for mmdet-style ``python tools/demo.py ...`` and torchrun)."""

import sys

from mtmnv3.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
