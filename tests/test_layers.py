"""The package's layering: stream is transport (no torch, no model), imports point one way, and
no module-level import cycle exists."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "live3dpe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """`live3dpe.stream.engine` -> `stream`."""
    return module.split(".")[1] if module.count(".") else ""


def top_level_imports(path: Path) -> set[str]:
    """live3dpe modules imported when `path` is imported (module level, not inside functions or
    `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("live3dpe")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in top_level_imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_import_live3dpe_stream_does_not_import_torch():
    code = "import live3dpe.stream, live3dpe.stream.sources, live3dpe.stream.sinks, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stream_never_imports_the_layers_above_or_the_model(graph):
    for name, imports in graph.items():
        if name.startswith("live3dpe.stream"):
            bad = {m for m in imports if layer(m) in ("model", "pose", "tracking", "pipeline", "webapp")}
            assert not bad, f"{name} imports {bad}"


def test_model_and_pipeline_never_import_the_front_ends(graph):
    for name, imports in graph.items():
        if layer(name) in ("model", "pose", "tracking", "pipeline", "stream"):
            bad = {m for m in imports if layer(m) == "webapp"}
            assert not bad, f"{name} imports {bad}"


def test_no_module_level_import_cycle(graph):
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:  # on the current path: a cycle
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
