"""The proxy's process modules import each other without cycles: every import that runs
counted, at module level or inside a function (a deferred import hides a cycle, it does not
end it); only ``if TYPE_CHECKING:`` blocks, which never run, are left out. The process entry
points live in shadoweval/processes.py for this reason."""

from __future__ import annotations

import ast
from pathlib import Path

import shadoweval

PACKAGE = Path(shadoweval.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _run_time(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _graph(modules: set[str], files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name in modules:
        for node in _run_time(ast.parse(files[name].read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_process_modules_have_no_import_cycle() -> None:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    ours = {
        m
        for m in files
        if m in ("shadoweval.server", "shadoweval.processes", "shadoweval.cli")
        or m.startswith("shadoweval.proxy.")
    }
    assert "shadoweval.processes" in ours
    assert _cycle(_graph(ours, files)) is None, _cycle(_graph(ours, files))


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
