"""The import graph of the package: one-way data flow (config -> method -> stages -> trainer -> ...), no cycles.

Every import, including those inside functions, goes to a module of the same or a lower layer; `python
tests/test_layers.py` prints the package-level graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "reasontrain"

# Bottom to top: a unit (a top-level module or subpackage) imports only from lower layers and from itself.
LAYERS = [
    {"config", "distributed"},
    {"console", "grading", "losses", "models", "generation", "run_lock", "tracking", "report", "cards",
     "critical_report"},
    {"data"},
    {"evaluation"},
    {"trainers"},
    {"stages"},
    {"methods"},
    {"cli"},
]


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_imports() -> dict[str, set[str]]:
    """{module: the reasontrain modules it imports anywhere in its file}."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        found = out.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reasontrain"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("reasontrain"))
    return out


def layer_of(u: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if u in layer)


def test_every_unit_has_a_layer():
    units = {unit(m) for m in module_imports()} - {"__init__"}
    assert units <= set().union(*LAYERS), sorted(units - set().union(*LAYERS))


def test_no_import_goes_up_a_layer():
    upward = []
    for mod, targets in module_imports().items():
        a = unit(mod)
        if a == "__init__":
            continue
        for target in targets:
            b = unit(target)
            if b in ("__init__", a):
                continue
            if layer_of(b) >= layer_of(a):
                upward.append(f"{mod} -> {target}")
    assert not upward, upward


def test_no_module_import_cycles():
    graph = {m: {t for t in ts if t != m} for m, ts in module_imports().items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                raise AssertionError(" -> ".join([*path[path.index(t):], t]) if t in path else t)
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


if __name__ == "__main__":
    edges: dict[str, set[str]] = {}
    for mod, targets in module_imports().items():
        for t in targets:
            if unit(mod) != unit(t) and unit(t) != "__init__":
                edges.setdefault(unit(mod), set()).add(unit(t))
    for i, layer in reversed(list(enumerate(LAYERS))):
        for u in sorted(layer):
            print(f"{i} {u:<16} -> {', '.join(sorted(edges.get(u, ()))) or '-'}")
