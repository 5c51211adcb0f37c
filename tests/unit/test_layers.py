"""The package's shape (docs/architecture.md): layers by the process each runs in, imports only downwards, no cycle.

Every import counts, at module level or inside a function: a lazy import is a dependency all the same.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "nexgen_etl"

# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("nexgen_etl", "nexgen_etl.core")),
    ("spark", ("nexgen_etl.spark",)),
    ("spark.local", ("nexgen_etl.spark.local",)),
    ("spark.submit", ("nexgen_etl.spark.submit",)),
    ("run", ("nexgen_etl.run",)),
    ("airflow", ("nexgen_etl.airflow",)),
    ("dev", ("nexgen_etl.dev",)),
    ("cli", ("nexgen_etl.cli",)),
]
# third-party packages a layer may not import (at all, lazily or not)
FORBIDDEN = {
    "core": ("pyspark", "airflow", "py4j"),
    "spark.local": ("airflow",),
    "spark.submit": ("pyspark", "airflow", "py4j"),
    "run": ("pyspark", "airflow", "py4j"),
    "airflow": ("pyspark", "py4j"),
    "spark": ("airflow",),
}

# what the processes that only start spark-submit (run, airflow, cli) may use of the Spark layers
SUBMIT_ONLY = ("nexgen_etl.spark.submit", "nexgen_etl.spark.jars")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best is not None, name
    return best


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported name, line) for every import in the module; package-internal ones resolved to a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".")[: len(name.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join(pkg + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in known else base, node.lineno))
    return out


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for imported, _ in imports_of(name, path, known):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "nexgen_etl":
                graph[name].add(imported)
    return graph


def test_imports_only_go_down_the_layers() -> None:
    """Catches: core importing run (report needing plan_key from the pipeline: tried), run importing the Spark job
    even lazily (pipeline building a URI with the job's helper: tried), pyspark in the submit spec."""
    mods = modules()
    known = set(mods)
    wrong = []
    for name, path in mods.items():
        mine = layer_of(name)
        for imported, line in imports_of(name, path, known):
            if imported.startswith("nexgen_etl"):
                while imported not in known:
                    imported = imported.rpartition(".")[0]
                if layer_of(imported) > mine:
                    wrong.append(f"{path.relative_to(SRC)}:{line} ({LAYERS[mine][0]}) imports {imported} "
                                 f"({LAYERS[layer_of(imported)][0]})")
                elif (LAYERS[mine][0] in ("run", "airflow", "cli") and imported.startswith("nexgen_etl.spark")
                      and imported not in SUBMIT_ONLY):
                    wrong.append(f"{path.relative_to(SRC)}:{line} ({LAYERS[mine][0]}) imports {imported}: only "
                                 f"{', '.join(SUBMIT_ONLY)} of the Spark layers")
            else:
                top = imported.split(".")[0]
                if top in FORBIDDEN.get(LAYERS[mine][0], ()):
                    wrong.append(f"{path.relative_to(SRC)}:{line} ({LAYERS[mine][0]}) imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Catches: spark.submit → class archive → pipeline → spark.submit, and any other cycle of modules."""
    graph = internal_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    assert not cycles, cycles


@pytest.mark.parametrize("module", [
    pytest.param("nexgen_etl.run.pipeline", id="run"),
    pytest.param("nexgen_etl.cli", id="cli"),
    pytest.param("nexgen_etl.core.report", id="core"),
])
def test_orchestration_never_loads_pyspark(module: str) -> None:
    """The CLI and the pipeline steps start spark-submit; they never load PySpark themselves.

    Catches: the pipeline importing the job (which imports pyspark at the top) to build a URI.
    """
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
