"""Measure a per-block latency table for a trunk variant on one device profile.

Usage:
    python tools/profile.py --variant small [--backend eager|compile|onnxruntime]
                            [--threads 1] [--size 224] [--dtype fp32|int8] [--se-study]
                            [--warmup 5] [--repeats 100] [--prediction sum|overhead|boundary]
                            [--clock wall|cpu] [--no-progress] --out table.json

Prints the per-block table and the whole-trunk latency predicted from the
blocks vs measured end to end, and writes the table as JSON.
"""

from __future__ import annotations

import os
import sys

if __name__ == "profile":
    # Every script in tools/ runs with this folder first on sys.path, so a plain
    # ``import profile`` (cProfile does it; torch._dynamo imports cProfile)
    # lands here: stand in for the standard library's module instead.
    import importlib.util
    import sysconfig

    _spec = importlib.util.spec_from_file_location(
        __name__, os.path.join(sysconfig.get_path("stdlib"), "profile.py")
    )
    _stdlib_profile = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_stdlib_profile)
    sys.modules[__name__] = _stdlib_profile
    globals().update({k: v for k, v in vars(_stdlib_profile).items() if not k.startswith("__")})
else:
    # Run as a script: take this folder off sys.path before anything imports profile.
    if __name__ == "__main__" and os.path.samefile(
        sys.path[0] or os.curdir, os.path.dirname(os.path.abspath(__file__))
    ):
        sys.path.pop(0)
    from mtmnv3.cli.profile import main, parse_args  # noqa: F401  (importable under another name)

    if __name__ == "__main__":
        sys.exit(main())
