"""The package's layers, stated once: every import points down, and no import closes a circle.

Each folder of ``mtmnv3/`` is one layer. A module may import from its own
layer and from the layers listed before it, never from one listed after it.
Every import counts, including those inside functions: a function-level
import is still a dependency, only a later one. ``heads/`` installs as
``mtmnv3.heads`` and sits between the trunk and the models that plug it in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The one statement of the layer order (lowest first).
LAYERS = (
    "core",  # specs, registries, structures, file and checkpoint I/O, layers, timing
    "data",  # datasets, synthetic scenes, transforms, corruptions, MOTChallenge text I/O
    "backbone",  # trunk, variants, StagePlan, complexity, the mmdet backbone adapter
    "heads",  # plug-in heads (only the trunk's feature_info contract)
    "models",  # neck, multi-task perceptor, robust training, loss weighting
    "tracking",  # Kalman, matching, tracker
    "evaluation",  # metrics
    "engine",  # mmengine runner, hooks, EMA
    "runtime",  # export, sessions, frame runners, budget, video, perception loop
    "apis",  # init_model, inference_*
    "studies",  # latency, split search, quantization, robustness, calibration
    "cli",  # one module per subcommand
)
# Top-level modules outside the layers: the package facade, ``python -m mtmnv3``, and the
# ``<scope>.registry`` module mmengine imports for the ``mtmnv3`` scope. Nothing in the
# package imports them.
ENTRY_MODULES = ("mtmnv3", "mtmnv3.__main__", "mtmnv3.registry")
# Third-party packages the tracker must not pull in (metrics stay in evaluation/).
TRACKING_FORBIDDEN = ("pycocotools", "motmetrics", "trackeval", "mtmnv3.evaluation")


def _module_files() -> dict[str, Path]:
    files = {}
    for base, prefix in ((REPO / "mtmnv3", ("mtmnv3",)), (REPO / "heads", ("mtmnv3", "heads"))):
        for path in base.rglob("*.py"):
            parts = prefix + path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


MODULES = _module_files()


def _imports(name: str, path: Path) -> list[str]:
    """Every module name the file imports (absolute; relative ones resolved), wherever the import is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import submodule`` imports the submodule.
            subs = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
            found += subs or [module]
    return found


def _internal(target: str) -> str | None:
    """The package module an import names (the longest known prefix), or None for third-party imports."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def layer_of(module: str) -> int | None:
    """Index of the module's layer in :data:`LAYERS`; None for the top-level ``mtmnv3`` package."""
    if module in ENTRY_MODULES:
        return None
    parts = module.split(".")
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: '{parts[1]}' is not a layer; known layers: {', '.join(LAYERS)}")
    return LAYERS.index(parts[1])


GRAPH = {
    name: sorted({dep for dep in map(_internal, _imports(name, path)) if dep and dep != name})
    for name, path in MODULES.items()
}


def test_every_module_belongs_to_a_layer():
    loose = [
        name
        for name in MODULES
        if name.count(".") == 1 and name.split(".")[1] not in LAYERS and name not in ENTRY_MODULES
    ]
    assert not loose, f"modules outside any layer: {loose}"


def test_imports_point_down():
    upward = []
    for name, deps in GRAPH.items():
        for dep in deps:
            if dep in ENTRY_MODULES:
                upward.append(f"{name} imports the entry module {dep}")
                continue
            own, theirs = layer_of(name), layer_of(dep)
            if own is not None and theirs > own:
                upward.append(f"{name} ({LAYERS[own]}) -> {dep} ({LAYERS[theirs]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_cycle_detector_finds_a_circle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


def test_upward_import_is_caught(tmp_path):
    assert (
        layer_of("mtmnv3.core.fileio") < layer_of("mtmnv3.cli.train")
        if "mtmnv3.cli.train" in MODULES
        else True
    )
    with pytest.raises(AssertionError, match="not a layer"):
        layer_of("mtmnv3.nowhere.module")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("mtmnv3.tracking")))
def test_tracking_pulls_in_no_metrics(name):
    bad = [t for t in _imports(name, MODULES[name]) if t.startswith(TRACKING_FORBIDDEN)]
    assert not bad, f"{name} imports {bad}"
