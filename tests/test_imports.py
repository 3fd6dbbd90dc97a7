"""The import graph of om2p_lite/ has no cycle: a static AST walk, nothing is imported.

Every intra-package import counts as an edge: module level, inside functions, and under
``if TYPE_CHECKING:`` alike, so a deferred import cannot hide a circle. ``from pkg import
name`` is an edge to ``pkg.name`` when that is a submodule, else to ``pkg``. Importing
``a.b.c`` is an edge to ``a.b.c`` only, not to its parent packages (Python has those
half-initialised already, so a package ``__init__`` re-exporting its submodules is no circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "om2p_lite"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    files = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _package_of(module: str, path: Path) -> str:
    """The package a relative import inside ``module`` starts from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The intra-package modules that ``module`` imports anywhere in its file."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in modules else source)
    return {t for t in targets if t in modules and t != module}


def import_graph() -> dict[str, set[str]]:
    """Module -> the intra-package modules it imports."""
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), those with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_walk_sees_known_edges():
    """The walk finds deferred and relative imports (so an empty cycle list means something)."""
    graph = import_graph()
    assert "om2p_lite.flows.ops" in graph["om2p_lite.flows.stacked"]
    assert "om2p_lite.rl.population" in graph["om2p_lite.rl.train"]
    assert "om2p_lite.data.validate" in graph["om2p_lite.data.dataset"]
    assert "om2p_lite.envs.registry" in graph["om2p_lite.envs"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]


def test_no_import_cycles():
    """No set of om2p_lite modules imports itself round in a circle."""
    graph = import_graph()
    cycles = strongly_connected(graph)
    lines = [
        " -> ".join(c) + "  (edges: "
        + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")"
        for c in cycles
    ]
    assert not cycles, "import cycles in om2p_lite/:\n" + "\n".join(lines)
