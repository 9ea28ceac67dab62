"""The package's import graph: no cycles, and the configuration modules layered in one
direction (each file's config imports the shared base and the sections it contains)."""

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


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in sorted(ROOT.rglob("*.py"))}
    modules = set(paths)
    return {
        name: _imports_at_load(ast.parse(path.read_text(encoding="utf-8")).body, modules) - {name}
        for name, path in paths.items()
    }


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


def test_config_modules_import_only_their_layers() -> None:
    graph = _graph()
    prefix = "shadoweval.config."
    config = {name.removeprefix(prefix) for name in graph if name.startswith(prefix)}
    assert config == set(CONFIG_LAYERS)
    for name in sorted(config):
        used = {m.removeprefix(prefix) for m in graph[prefix + name] if m.startswith(prefix)}
        assert used <= CONFIG_LAYERS[name], f"config.{name} imports {sorted(used)}"
