"""The documentation: the site builds strict, the configs page is current, the README's links resolve."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    out, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append(line)
    return out


def _github_anchors(md: Path) -> set[str]:
    """The heading anchors GitHub gives a markdown file (lower case, punctuation dropped, spaces to '-')."""
    anchors = set()
    for line in _prose_lines(md.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def _relative_links(md: Path) -> list[str]:
    """Every link target in ``md``'s prose that is not a URL or a same-page anchor."""
    targets = []
    for line in _prose_lines(md.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue
            targets.append(target)
    return targets


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (the docs extra: pip install -e '.[docs]')",
)
def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: no broken link or anchor, no page missing from the nav."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "configs" / "index.html").is_file()


def test_configs_page_is_current():
    """docs/configs.md lists every config with its first comment (tools/gen_config_docs.py)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_page_is_current():
    """docs/cli.md's help blocks equal each subcommand's --help (tools/gen_cli_docs.py), one section each."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_cli_docs.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    from mtmnv3.cli import COMMANDS

    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"\n## {name}\n" in page and f"(#{name})" in page, name


def test_configs_page_lists_every_config():
    page = (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "configs").rglob("*.py")):
        assert f"`{path.relative_to(ROOT).as_posix()}`" in page


def test_readme_is_a_short_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "make test" in text  # CI runs the README's test command
    assert "make demo" in text


def test_readme_relative_links_resolve():
    """Every relative link in README.md points at a file in the repository (and at a heading it has)."""
    broken = []
    for target in _relative_links(README):
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve()
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _github_anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


def test_link_checker_sees_links():
    """The checker above finds links at all (a broken pattern would pass vacuously)."""
    links = _relative_links(README)
    assert any(link.startswith("docs/") for link in links)
