"""``mtmnv3 test`` as a script (kept for mmdet-style ``python tools/test.py ...`` and torchrun)."""

import sys

from mtmnv3.cli import main

if __name__ == "__main__":
    sys.exit(main(["test", *sys.argv[1:]]))
