"""The package mirrors the flow: its layers, and no import going up a layer or round in a cycle.

docs/architecture.md draws the same layers; this test is what keeps them true. Every import counts,
also those inside functions and under ``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import counterscan

PACKAGE = Path(counterscan.__file__).parent

EDGES = ("__init__", "__main__", "cli", "api", "demo")
"""Thin edges over the library: they may use anything, nothing in the library uses them."""

GROUND_FLOOR = ("config", "errors", "records", "signals", "textnorm")
"""Modules everybody uses; they use only each other."""

LAYERS = ("imaging", "store", "matchers", "registry", "ingest", "ranking", "scan", "review", "service")
"""The stage packages, lowest first: a package imports only from those before it and the ground floor."""

MAX_TOP_MODULES = 10


def _unit_rank(unit: str) -> int:
    if unit in GROUND_FLOOR:
        return 0
    if unit in LAYERS:
        return 1 + LAYERS.index(unit)
    assert unit in EDGES, f"counterscan.{unit} is in no layer: add it to a package (or to the lists above)"
    return 1 + len(LAYERS)


EDGE_USES = {("cli", "api"), ("cli", "demo"), ("__main__", "cli")}
"""Edges that use another edge: `serve` starts the API, `demo` is a command, `python -m` runs the CLI."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: str, module: str, *, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every counterscan module that the source of ``module`` imports, with the line."""
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "counterscan":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1])
                imported = f"{base}.{node.module}" if node.module else base
            else:
                imported = node.module or ""
            if imported.split(".")[0] != "counterscan":
                continue
            for alias in node.names:
                submodule = f"{imported}.{alias.name}"
                yield (submodule if _is_module(submodule) else imported), node.lineno


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _unit(module: str) -> str:
    """The layer unit of a module: its top-level package, or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _dependencies() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, importing unit, imported unit) for every import between two units."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        source = path.read_text(encoding="utf-8")
        for imported, line in _imports(source, module, is_package=path.name == "__init__.py"):
            # The package root holds the version and lazy entry points; it is loaded with every module.
            if imported == "counterscan" or _unit(imported) == _unit(module):
                continue
            yield str(path.relative_to(PACKAGE.parent)), line, _unit(module), _unit(imported)


def _upward(source: str, target: str) -> bool:
    if (source, target) in EDGE_USES:
        return False
    if source in EDGES and target in EDGES:
        return True
    return _unit_rank(target) > _unit_rank(source)


def test_the_top_of_the_package_holds_only_the_edges_and_the_ground_floor() -> None:
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    assert set(top) <= set(EDGES) | set(GROUND_FLOOR), set(top) - set(EDGES) - set(GROUND_FLOOR)
    packages = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    assert packages == sorted(LAYERS)


def test_no_package_imports_a_layer_above_it() -> None:
    upward = [
        f"{where}:{line}: {source} imports {target}"
        for where, line, source, target in _dependencies()
        if _upward(source, target)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_packages_or_ground_floor_modules() -> None:
    graph: dict[str, set[str]] = {}
    for _where, _line, source, target in _dependencies():
        graph.setdefault(source, set()).add(target)
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        trail.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        trail.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checks_catch_a_lazy_upward_import_and_a_cycle() -> None:
    """The checker itself: a store module that imported the ranker inside a function would be reported."""
    source = "def upgrade():\n    from counterscan.ranking.ranker import cold_start_scores\n"
    found = list(_imports(source, "counterscan.store.migrations", is_package=False))
    assert found == [("counterscan.ranking.ranker", 2)]
    assert _upward("store", _unit(found[0][0]))
    assert not _upward("scan", "store") and _upward("config", "matchers") and _upward("api", "cli")
    relative = list(_imports("from ..records import Evidence\n", "counterscan.store.migrations", is_package=False))
    assert relative == [("counterscan.records", 1)]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None
