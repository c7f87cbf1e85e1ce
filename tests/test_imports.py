"""Every module of the project imports on its own, and no two modules import each other.

The import graph is read from the source with `ast`. It takes every import a module makes,
module-level and inside functions alike: a lazy import only puts off the same dependency
(``fer_port`` reaching ``export`` from inside a function still tied the backends to the
exporter in a loop), and each lazy cycle in this tree was one refactor away from an
ImportError at start-up. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stream", "inference", "llm", "dashboard", "deploy", "training")
#: Modules that are scripts, not libraries: importing them runs them.
SCRIPTS = {
    # Streamlit runs this file top to bottom as the page; importing it draws the app.
    "dashboard.app": "a Streamlit script: it renders the page when imported",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module `name` names (``pkg.mod.func`` → ``pkg.mod``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _imports(module: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    deps: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import):
            deps.update(r for a in node.names if (r := _resolve(a.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, *([node.module] if node.module else [])])
            # `from pkg import name`: name may be a submodule or a name defined in pkg.
            deps.update(r for a in node.names if (r := _resolve(f"{base}.{a.name}")))
        stack.extend(ast.iter_child_nodes(node))
    deps.discard(module)
    return deps


def import_graph() -> dict[str, set[str]]:
    return {module: _imports(module, path) for module, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop (``a → b → … → a``) per strongly connected component of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is ~100 modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    loops = []
    for component in components:
        # Walk inside the component from its first module until a module repeats.
        start = min(component)
        path, seen = [start], {start}
        while True:
            nxt = min(w for w in graph[path[-1]] if w in component)
            if nxt in seen:
                loops.append([*path[path.index(nxt) :], nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return loops


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" → ".join(loop) for loop in found)


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """One fresh interpreter imports every module (the heavy ones, torch and aiortc, take
    seconds each; one process per module would take minutes). With no cycle (above), an
    import cannot depend on which module happened to be imported first."""
    modules = sorted(m for m in MODULES if m not in SCRIPTS)
    code = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=3)\n"
        "print(json.dumps(failed))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{name}:\n{tb}" for name, tb in failed.items())


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_scripts_are_not_imported(script: str) -> None:
    """Listed so the report says which modules the import test leaves out, and why."""
    pytest.skip(f"{script} is not imported: {SCRIPTS[script]}")
