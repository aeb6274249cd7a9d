"""Write docs/configs.md: every config under configs/ with its one-line description.

Each description is the first sentence of the comment block a config file
starts with, so the page says what the files say. Run it after adding a
config or changing a config's first comment:

    python tools/gen_config_docs.py            # rewrite docs/configs.md
    python tools/gen_config_docs.py --check    # exit 1 if docs/configs.md is stale

Only the standard library is used (no torch, no mmengine), so the check is cheap.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PAGE = ROOT / "docs" / "configs.md"

# A sentence ends at a full stop followed by white space or the end, except
# after abbreviations that the configs' comments use inside sentences.
SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)\.(?=\s|$)")

HEADER = """\
# Configs

Every experiment is one [mmengine](https://mmengine.readthedocs.io/) config
file under `configs/`. A config names the files it builds on in `_base_`
(runtime, schedule, data, heads) and overrides what differs; `mtmnv3 train
CONFIG` trains it into `work_dirs/CONFIG_NAME/` and `mtmnv3 test CONFIG CKPT`
evaluates the checkpoint. The per-config parameters, MACs and held-out
results found in the work dirs are in `configs/metafile.yml`
(`mtmnv3 summary --update-metafile`); the measurements behind the default
recipe are in [design notes](design-notes.md).

Each description below is the first sentence of the comment the file starts
with; the full comment says more. This page is generated: after adding a
config or changing its first comment, run `python tools/gen_config_docs.py`
(`--check` fails when the page is stale, as the tests do).

## Overriding a config from the command line: `--cfg-options`

`train`, `test`, `demo`, `export`, `quantize`, `robustness` and
`calibrate-tracker` take `--cfg-options KEY=VALUE [KEY=VALUE ...]`
([command line](cli.md)). Each pair is merged into the loaded config
before anything is built, so a run differs from the file only by what the
command line says:

```bash
# a shorter run: warm-up, cosine decay and the final validation follow the new length
mtmnv3 train configs/mtmnv3_small_3task_synth.py --work-dir work_dirs/short \\
    --cfg-options train_cfg.max_iters=1200
# a trunk variant: no squeeze-and-excitation, ReLU6 instead of hard-swish
mtmnv3 train configs/mtmnv3_small_3task_synth.py \\
    --cfg-options model.trunk.se=none model.trunk.activation=relu6
# a list element by its index: the first dataset of a concatenated training set
mtmnv3 train configs/mtmnv3_small_3task_synth.py \\
    --cfg-options train_dataloader.dataset.datasets.0.num_sequences=500
```

- **Keys** are dotted paths into the config's nested dicts
  (`model.trunk.width_mult`); a number in the path indexes a list
  (`datasets.0`). Setting a dict key replaces that key only; its
  siblings keep the file's values.
- **Values** are parsed by mmengine's `DictAction`: integers and floats as
  numbers, `True` / `False` / `None` as themselves, `a,b` and `[a,b]` as a
  list, `(a,b)` as a tuple (nesting works: `[(1,2),(3,4)]`), anything else as
  a string. Quotes are dropped and so is white space inside a value, so a
  string value cannot contain a space.
- A value is merged once the file is loaded: variables the file used are
  already resolved (`--cfg-options max_iters=1200` changes nothing that
  runs). `train_cfg.max_iters=N` is the one exception that carries its
  consequences: every iteration-based scheduler's `begin`/`end` scale to the
  new length (warm-up and decay keep their shares) and a final validation
  stays at the end (`mtmnv3.engine.scale_schedule`); a scheduler key given on
  the command line too wins.
- The merged config is what the run saves next to its checkpoints
  (`work_dirs/NAME/CONFIG_NAME.py`), so the work dir records the overrides;
  evaluate with that file rather than the original when they change the model.
- In Python: `mtmnv3.engine.load_config(path, {"model.trunk.se": "none"})` or
  `mtmnv3.apis.init_model(config, checkpoint, cfg_options)`.
"""

SECTIONS = (
    ("Experiments", "configs/*.py: each one trains a model (`mtmnv3 train CONFIG`).", "*.py"),
    (
        "Shared pieces",
        "configs/_base_/: the runtime, schedules, data and heads that the experiments name in `_base_`.",
        "_base_/**/*.py",
    ),
    (
        "Successor trunks",
        "configs/successors/: the default three-task recipe with a successor trunk from timm in place of "
        "MobileNetV3-small ([successor trunks](successors.md)).",
        "successors/*.py",
    ),
    (
        "MMDetection",
        "configs/mmdet/: detectors with the trunk as an MMDetection backbone "
        "([MMDetection backbone](mmdet.md); needs `make mmdet`).",
        "mmdet/**/*.py",
    ),
)


def describe(path: Path) -> str:
    """The first sentence of the comment block ``path`` starts with ('' if none).

    The block's first paragraph is read: it ends at an empty comment line, a
    list item or an indented (example) line. A sentence that introduces a list
    (ends with ':') points at the file for the rest.
    """
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        body = text.strip()
        if not body or body.startswith("- ") or text.startswith("   "):
            break
        lines.append(body)
    paragraph = " ".join(lines)
    match = SENTENCE_END.search(paragraph)
    sentence = paragraph[: match.end()] if match else paragraph
    if sentence.endswith(":"):
        sentence = sentence[:-1].rstrip() + " (listed in the file)."
    if sentence and not sentence.endswith((".", "!", "?")):
        sentence += "."
    return sentence.replace("|", "\\|")


def render() -> str:
    """The text of docs/configs.md for the configs on disk."""
    out = [HEADER]
    for title, intro, pattern in SECTIONS:
        files = sorted(p for p in CONFIGS.glob(pattern) if p.is_file())
        out.append(f"\n## {title}\n\n`{intro.split(':', 1)[0]}`:{intro.split(':', 1)[1]}\n\n")
        out.append("| config | description |\n|---|---|\n")
        for p in files:
            rel = p.relative_to(ROOT).as_posix()
            out.append(f"| `{rel}` | {describe(p) or '(no comment)'} |\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current == text:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(PAGE), "generated"
            )
        )
        print(f"{PAGE.relative_to(ROOT)} is stale: run python tools/gen_config_docs.py", file=sys.stderr)
        return 1
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
