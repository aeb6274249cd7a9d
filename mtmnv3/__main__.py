"""``python -m mtmnv3 SUBCOMMAND ...``: the same command line as the ``mtmnv3`` console script."""

import sys

from mtmnv3.cli import main

if __name__ == "__main__":
    sys.exit(main())
