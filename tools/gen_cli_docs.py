"""Keep docs/cli.md's help texts equal to ``mtmnv3 SUBCOMMAND --help``.

The page's prose and its table are written by hand; each ``## NAME`` section
holds one fenced ``text`` block, the subcommand's ``--help`` output, and the
page's first ``text`` block is ``mtmnv3 --help``. This script rewrites those
blocks from the parsers (at 100 columns) and appends a section for a
subcommand the page does not have yet. Run it after changing a flag:

    python tools/gen_cli_docs.py            # rewrite docs/cli.md
    python tools/gen_cli_docs.py --check    # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"```text\n.*?```", re.S)


def _help_texts() -> tuple[str, dict[str, str]]:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width
    from mtmnv3.cli import COMMANDS, _parser

    top = _parser(None)[0].format_help()
    subs = {}
    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(f"mtmnv3.cli.{module_name}")
        subs[name] = module.add_parser().format_help()
    return top, subs


def _fenced(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```"


def render(page: str) -> str:
    """The page with every help block regenerated (and sections added for new subcommands)."""
    top, subs = _help_texts()
    page = BLOCK.sub(lambda m: _fenced(top), page, count=1)
    for name, text in subs.items():
        heading = re.search(rf"^## {re.escape(name)}\n", page, re.M)
        if heading is None:
            page = page.rstrip() + f"\n\n## {name}\n\n`mtmnv3 {name} --help`:\n\n{_fenced(text)}\n"
            continue
        block = BLOCK.search(page, heading.end())
        if block is None:
            raise SystemExit(f"{PAGE}: section '## {name}' has no ```text block")
        page = page[: block.start()] + _fenced(text) + page[block.end() :]
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale; write nothing")
    args = parser.parse_args(argv)
    old = PAGE.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), "docs/cli.md", "generated", lineterm=""
            )
            print("\n".join(list(diff)[:60]))
            print("docs/cli.md is stale: run python tools/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        tmp = PAGE.with_suffix(".md.tmp")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, PAGE)
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
