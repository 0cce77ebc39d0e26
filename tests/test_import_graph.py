"""The import graph points one way: no cycle, and no arrow up or sideways in the layer table of
docs/architecture.md (which this test reads, so the drawing and the code cannot drift apart).

Every ``import`` counts, including the ones inside functions; only imports under
``if TYPE_CHECKING:`` are exempt (they never run). A *unit* is a top-level module or package of
``care_core`` (``care_core.stages``, ``care_core.config``), or the ``components`` / ``pipelines``
package. Arrows inside a unit may go anywhere except round in a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("care_core", "components", "pipelines")
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def discover(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the given top-level packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """All import statements that can run (skips the body of ``if TYPE_CHECKING:``)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``module`` imports (``from pkg import sub`` resolves to ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        for target in targets:
            while target and target not in modules:  # ``import care_core.x.y`` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    modules = discover(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        iters = [iter(sorted(graph[start]))]
        state[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "care_core" else parts[0]


def layers_from_doc(text: str) -> list[list[str]]:
    """Units per layer, top layer first, from the ``| layer | units | ... |`` table."""
    layers = []
    in_table = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[:2] == ["layer", "units"]:
            in_table = True
        elif in_table and line.lstrip().startswith("|"):
            if set(cells[0]) <= set("-: "):
                continue
            layers.append(re.findall(r"`([\w.]+)`", cells[1]))
        elif in_table:
            break
    return layers


def layer_violations(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    """Arrows from a unit to one in the same or a higher layer (``layers``: top first)."""
    rank = {unit: len(layers) - i for i, units in enumerate(layers) for unit in units}
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = unit_of(module), unit_of(target)
            if a in rank and b in rank and a != b and rank[b] >= rank[a]:  # unplaced units: the test above
                where = "up" if rank[b] > rank[a] else "sideways"
                bad.append(f"{module} -> {target} ({a} imports {b}: {where})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


@pytest.fixture(scope="module")
def layers() -> list[list[str]]:
    return layers_from_doc(ARCHITECTURE.read_text())


def test_every_unit_has_one_layer(graph, layers):
    placed = [unit for units in layers for unit in units]
    assert len(layers) >= 5, "docs/architecture.md: the layer table was not found"
    assert len(placed) == len(set(placed)), f"a unit is in two layers: {placed}"
    units = {unit_of(m) for m in graph}
    missing, stale = sorted(units - set(placed)), sorted(set(placed) - units)
    assert not missing, f"place these units in the layer table of docs/architecture.md: {missing}"
    assert not stale, f"docs/architecture.md names units that do not exist: {stale}"


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_arrows_point_down(graph, layers):
    bad = layer_violations(graph, layers)
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(bad)


# ----------------------------------------------------------------- the checker itself, on a toy tree
def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_sees_lazy_relative_and_package_imports(tmp_path):
    _write(tmp_path, "care_core/__init__.py", "")
    _write(tmp_path, "care_core/low/__init__.py", "from care_core.low.a import f\n")
    _write(tmp_path, "care_core/low/a.py", "def f():\n    from ..high import g\n    return g\n")
    _write(tmp_path, "care_core/high.py", "from care_core.low import a\nfrom typing import TYPE_CHECKING\n")
    _write(
        tmp_path,
        "care_core/typed.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import care_core.high\n",
    )
    graph = import_graph(tmp_path, ("care_core",))
    assert graph["care_core.low"] == {"care_core.low.a"}
    assert graph["care_core.low.a"] == {"care_core.high"}  # relative import inside a function
    assert graph["care_core.high"] == {"care_core.low.a"}  # ``from pkg import sub`` is the submodule
    assert graph["care_core.typed"] == set()  # type-only import
    assert find_cycle(graph) == ["care_core.high", "care_core.low.a", "care_core.high"]
    layers = [["care_core.high", "care_core.typed"], ["care_core.low"], ["care_core"]]
    assert layer_violations(graph, layers) == [
        "care_core.low.a -> care_core.high (care_core.low imports care_core.high: up)"
    ]
    assert layer_violations(graph, [["care_core.high", "care_core.low"], ["care_core.typed"]]) == [
        "care_core.high -> care_core.low.a (care_core.high imports care_core.low: sideways)",
        "care_core.low.a -> care_core.high (care_core.low imports care_core.high: sideways)",
    ]


def test_layer_table_parsing():
    text = "intro\n\n| layer | units | job |\n|---|---|---|\n| top | `a`, `b.c` | x |\n| low | `d` | y |\n\nafter |\n"
    assert layers_from_doc(text) == [["a", "b.c"], ["d"]]
