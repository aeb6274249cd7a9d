"""Packaging: heads/ installs as mtmnv3.heads; setup.cfg lists every subpackage."""

import configparser
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_heads_install_as_mtmnv3_heads_only():
    spec = importlib.util.find_spec("mtmnv3.heads")
    assert spec is not None and Path(spec.origin).parent == ROOT / "heads"


def test_setup_cfg_lists_every_subpackage():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mtmnv3").rglob("__init__.py")} | {
        "mtmnv3.heads"
    }
    assert on_disk == listed, f"update setup.cfg [options] packages: {sorted(on_disk ^ listed)}"
