"""The layout rule of ../shared/DESIGN.md, checked on the source: data (stores/) imports no model and no
process, the student imports nothing of the project, teachers import no process, nothing but the CLI
imports the CLI, and no two project modules import each other in a circle (imports inside functions
count too: a lazy import is still a dependency)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stores", "student", "teachers", "pipeline")
# what each layer may import from the project (besides itself)
ALLOWED = {"stores": set(), "student": set(), "teachers": {"stores", "student"},
           "pipeline": {"stores", "student", "teachers"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def resolve(name: str, modules: dict) -> str | None:
    """The project module an import refers to: the longest dotted prefix that is a module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(path: Path, modules: dict) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = resolve(name, modules)
            if target:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def test_layers_never_reach_upward(graph):
    bad = []
    for mod, deps in graph.items():
        layer = mod.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other != layer and other not in ALLOWED[layer]:
                bad.append(f"{mod} -> {dep}")
            if dep.startswith("pipeline.cli") and not mod.startswith("pipeline.cli"):
                bad.append(f"{mod} -> {dep} (only the CLI imports the CLI)")
            if mod == "pipeline.runtime" and dep.startswith("pipeline."):
                bad.append(f"{mod} -> {dep} (runtime sits under every stage)")
    assert not bad, "imports that reach upward:\n" + "\n".join(sorted(bad))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None (iterative depth-first search)."""
    state: dict[str, int] = {}                # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
