"""The package's import graph: no cycles at load time; none among the proxy's process
modules even counting the imports deferred into functions (a deferred import hides a cycle,
it does not end it: the process entry points live in shadoweval/processes.py for this
reason); and the configuration modules layered in one direction (each file's config imports
the shared base and the sections it contains)."""

from __future__ import annotations

import ast
from pathlib import Path

import shadoweval

ROOT = Path(shadoweval.__file__).parent

# What each config module may import from the others.
CONFIG_LAYERS: dict[str, set[str]] = {
    "base": set(),
    "kafka": {"base"},
    "report": {"base"},
    "probes": {"base"},
    "proxy": {"base", "kafka", "probes", "report"},
    "report_settings": {"base", "proxy", "report"},
    "scorer": {"base", "kafka"},
    "review": {"base", "proxy", "scorer"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_at_load(body: list[ast.stmt], modules: set[str]) -> set[str]:
    """The shadoweval modules a module body imports when it is loaded (not in functions,
    not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif node.module in modules:
                    found.add(node.module)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            found |= _imports_at_load(node.body + node.orelse, modules)
        elif isinstance(node, ast.Try):
            found |= _imports_at_load(node.body + node.orelse + node.finalbody, modules)
            for handler in node.handlers:
                found |= _imports_at_load(handler.body, modules)
    return found


def _files() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    paths = _files()
    modules = set(paths)
    return {
        name: _imports_at_load(ast.parse(path.read_text(encoding="utf-8")).body, modules) - {name}
        for name, path in paths.items()
    }


def _run_time(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (which never run)."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _graph_with_deferred(modules: set[str], files: dict[str, Path]) -> dict[str, set[str]]:
    """Every import among ``modules`` that can run, in a function or not."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name in modules:
        for node in _run_time(ast.parse(files[name].read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or ())


def test_the_process_modules_have_no_cycle_even_through_deferred_imports() -> None:
    files = _files()
    ours = {
        m
        for m in files
        if m in ("shadoweval.server", "shadoweval.processes", "shadoweval.cli")
        or m.startswith("shadoweval.proxy.")
    }
    assert "shadoweval.processes" in ours
    cycle = _cycle(_graph_with_deferred(ours, files))
    assert cycle is None, " -> ".join(cycle or ())


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_config_modules_import_only_their_layers() -> None:
    graph = _graph()
    prefix = "shadoweval.config."
    config = {name.removeprefix(prefix) for name in graph if name.startswith(prefix)}
    assert config == set(CONFIG_LAYERS)
    for name in sorted(config):
        used = {m.removeprefix(prefix) for m in graph[prefix + name] if m.startswith(prefix)}
        assert used <= CONFIG_LAYERS[name], f"config.{name} imports {sorted(used)}"
