"""The layout shows the architecture: core imports nothing from Dagster and its modules import no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import fix7_pipeline

PACKAGE = Path(fix7_pipeline.__file__).parent
CORE = PACKAGE / "core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every fix7_pipeline module `path` imports, at module level or inside a function (entry points aside)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "_main"
            for n in ast.walk(f)}  # `python -m` entry points run alone, after every import
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("fix7_pipeline") or m.split(".")[0] == "dagster"}


def _core_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in CORE.rglob("*.py")}
    return {m: {d for d in _imports(p) if d in files and d != m} for m, p in files.items()}


def test_core_imports_nothing_from_dagster():
    for path in CORE.rglob("*.py"):
        assert not {m for m in _imports(path) if m.split(".")[0] == "dagster"}, path


def test_core_modules_import_no_cycle():
    graph = _core_graph()
    assert "fix7_pipeline.core.evidence.report" not in graph["fix7_pipeline.core.evidence.audit"]
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_one_sql_lexer():
    """Only core/postgres/sql_lexer.py knows where quotes, dollar quotes and comments end."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "sql_lexer.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "class PlainScanner" not in text and "_DOLLAR_TAG" not in text, path
        assert "def tokens(" not in text, path
