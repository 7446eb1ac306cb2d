"""The layout shows the architecture (docs/LAYOUT.md): one folder of core/ per stage, folders that import only
what the layout allows and no circle, core free of Dagster, modules short, private names kept private.

Every rule is computed from the real imports (ast), module-level and inside functions alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fix7_pipeline

PACKAGE = Path(fix7_pipeline.__file__).parent
ROOT = PACKAGE.parent
CORE = PACKAGE / "core"
BENCHMARKS = ROOT / "benchmarks"

# Shared by the stages, below all of them: what every stage may use.
LIBRARIES = {"shared", "storage", "postgres", "dumps", "contract"}
# One folder per stage of a rehearsal; a stage reaches another only through the run record that run/ hands on.
STAGES = {"intake", "clone", "sanitization", "shape", "anchor", "change"}
MAY_IMPORT: dict[str, set[str]] = {
    "shared": set(),
    "storage": {"shared"},
    "postgres": {"shared"},
    "dumps": {"shared", "postgres"},
    "contract": {"shared", "postgres"},
    **{stage: LIBRARIES for stage in STAGES},
    "evidence": LIBRARIES | STAGES,  # renders what any stage found
    "run": LIBRARIES | STAGES | {"evidence"},  # runs the stages in order and seals the packet
}
# Stage-to-stage imports that still exist, each with why: (importer, imported) as paths under core/.
CROSSINGS = {
    ("intake/contract_from_schema.py", "clone/restore.py"): "a schema-SQL contract is restored like a clone",
    ("intake/contract_from_schema.py", "shape/schema_shape.py"): "and its shape read by the shape gate's reader",
    ("shape/data_rules.py", "sanitization/rules.py"): "the sanitization GX suite is built from the secret rule "
                                                      "registry",
}
# Modules other branches move into their folder (issue 23): until then they sit at core/'s root, judged as
# members of the folder named here. The lead removes an entry when the move is merged.
PENDING_MOVE: dict[str, str] = {}
MAX_LINES = 500
# Over MAX_LINES, to be split; an entry goes when its module is short enough (the test says when).
PENDING_SPLIT: dict[str, str] = {}
# Private names still imported across modules, (importer, name): each one goes when a public name replaces it.
PRIVATE_PENDING: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_files() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """Every module `path` imports, at module level or inside a function (a `python -m` entry point aside);
    `from pkg import mod` counts as importing `pkg.mod`, not `pkg`, when that is one of `modules`."""
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
            subs = {f"{base}.{a.name}" for a in node.names}
            known = subs & (modules or set())
            out.update(known or subs)
            if not known or len(known) < len(subs):
                out.add(base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    if modules is not None:
        out = {m for m in out if m in modules}
    return {m for m in out if m.startswith("fix7_pipeline") or m.split(".")[0] == "dagster"}


def _core_graph() -> dict[str, set[str]]:
    files = {m: p for m, p in _package_files().items() if p.is_relative_to(CORE)}
    return {m: {d for d in _imports(p, set(files)) if d != m} for m, p in files.items()}


def _core_path(module: str) -> str:
    """fix7_pipeline.core.clone.restore -> clone/restore.py (a package: its folder/__init__.py)."""
    files = _package_files()
    return files[module].relative_to(CORE).as_posix()


def _folder(core_path: str) -> str | None:
    """The folder a module under core/ belongs to (a pending module: the folder it moves to); None for core/."""
    if "/" in core_path:
        return core_path.split("/")[0]
    return PENDING_MOVE.get(core_path)


def _folder_edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for m, deps in _core_graph().items():
        a = _core_path(m)
        for d in deps:
            b = _core_path(d)
            fa, fb = _folder(a), _folder(b)
            if fa and fb and fa != fb:
                edges.setdefault((fa, fb), set()).add((a, b))
    return edges


def test_core_imports_nothing_from_dagster():
    for path in CORE.rglob("*.py"):
        assert not {m for m in _imports(path) if m.split(".")[0] == "dagster"}, path


def test_every_core_module_lives_in_a_folder_the_layout_names():
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE).as_posix()
        if rel == "__init__.py":
            continue
        folder = _folder(rel)
        assert folder in MAY_IMPORT, f"core/{rel} is in no folder of the layout (docs/LAYOUT.md)"
    for name in PENDING_MOVE:
        assert (CORE / name).exists(), f"core/{name} has moved: drop it from PENDING_MOVE"


def test_folders_import_only_what_the_layout_allows():
    for (fa, fb), pairs in sorted(_folder_edges().items()):
        if fb in MAY_IMPORT[fa]:
            continue
        unlisted = sorted(p for p in pairs if p not in CROSSINGS)
        assert not unlisted, f"core/{fa}/ may not import core/{fb}/ (docs/LAYOUT.md): " + \
            ", ".join(f"{a} -> {b}" for a, b in unlisted)


def test_every_listed_crossing_still_exists():
    """A crossing that is gone leaves the list, so the list only shrinks."""
    found = {p for pairs in _folder_edges().values() for p in pairs}
    assert set(CROSSINGS) <= found, sorted(set(CROSSINGS) - found)


def test_folders_import_no_cycle():
    graph: dict[str, set[str]] = {}
    for fa, fb in _folder_edges():
        graph.setdefault(fa, set()).add(fb)
    _assert_acyclic(graph, lambda a, b: f"core/{a}/ -> core/{b}/: {sorted(_folder_edges()[(a, b)])[:3]}")


def test_core_modules_import_no_cycle():
    graph = _core_graph()
    assert "fix7_pipeline.core.evidence.report" not in graph["fix7_pipeline.core.evidence.audit"]
    _assert_acyclic(graph, lambda a, b: f"{a} -> {b}")


def _assert_acyclic(graph: dict[str, set[str]], say) -> None:
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d]) + "; " + say(m, d)
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_no_module_over_500_lines():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(long) <= set(PENDING_SPLIT), {k: v for k, v in long.items() if k not in PENDING_SPLIT}
    assert set(PENDING_SPLIT) <= set(long), f"short enough now, drop from PENDING_SPLIT: {set(PENDING_SPLIT) - set(long)}"


def _private_imports(path: Path) -> set[str]:
    """Names starting with one underscore that `path` takes from another fix7 module: imported by name, or read
    as an attribute of an imported fix7 module or name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound: set[str] = set()
    out: set[str] = set()
    private = lambda n: n.startswith("_") and not n.startswith("__")  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fix7_pipeline")):
            out.update(a.name for a in node.names if private(a.name))
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("fix7_pipeline"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                and private(node.attr):
            out.add(node.attr)
    return out


def test_no_private_name_imported_across_modules():
    paths = [*PACKAGE.rglob("*.py"), *(BENCHMARKS.rglob("*.py") if BENCHMARKS.is_dir() else [])]
    found = {(p.relative_to(PACKAGE if p.is_relative_to(PACKAGE) else ROOT).as_posix(), n)
             for p in paths for n in _private_imports(p)}
    assert found <= PRIVATE_PENDING, sorted(found - PRIVATE_PENDING)
    assert PRIVATE_PENDING <= found, f"now public, drop from PRIVATE_PENDING: {sorted(PRIVATE_PENDING - found)}"


def test_one_sql_lexer():
    """Only core/postgres/sql_lexer.py knows where quotes, dollar quotes and comments end."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "sql_lexer.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "class PlainScanner" not in text and "_DOLLAR_TAG" not in text, path
        assert "def tokens(" not in text, path


def _string_constants(path: Path) -> list[str]:
    """The string literals of `path`, docstrings and comments aside (comments are not in the ast)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_pipeline_names_are_defined_once():
    """The job and its partitions are spelled, and the lists of stages, gates and assets written, in
    core/shared/names.py only; `CLONE_GATES` meant three things and is gone (BLOCKING_STAGES, GATES,
    definitions.GATE_CHECKS)."""
    from fix7_pipeline.core.shared import names as n

    home = CORE / "shared" / "names.py"
    lists = [set(n.STAGES), set(n.GATES), set(n.ASSETS)]
    for path in PACKAGE.rglob("*.py"):
        if path == home:
            continue
        where = path.relative_to(PACKAGE)
        found = {"fix7_rehearsal", "fix7_rehearsals"} & {s.strip() for s in _string_constants(path)}
        assert not found, f"{where} spells {sorted(found)}: import it from core/shared/names.py"
        assert "CLONE_GATES" not in path.read_text(encoding="utf-8"), where
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exports = {id(a.value) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "__all__" for t in a.targets)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in exports:
                items = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                assert not any(len(items & known) >= 3 for known in lists), \
                    f"{where}:{node.lineno} writes out a list of stages, gates or assets: use core/shared/names.py"


def test_benchmarks_live_outside_the_package():
    assert not list(PACKAGE.glob("bench*.py")), "benchmarks belong in the top-level benchmarks/ folder"
    assert BENCHMARKS.is_dir() and list(BENCHMARKS.glob("*.py"))


def _functions_of(tree: ast.AST) -> dict[int, str]:
    """id(node) -> the name of the innermost function holding it, for every node inside a function."""
    inside: dict[int, str] = {}
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(f):
                if id(n) not in inside or n is not f:
                    inside[id(n)] = f.name
    return inside


def test_core_imports_at_module_top():
    """No fix7 module is imported inside a function in core/: an import circle is fixed, not hidden (the
    pending modules, and heavy third-party imports such as Great Expectations, aside)."""
    for path in CORE.rglob("*.py"):
        if path.relative_to(CORE).as_posix() in PENDING_MOVE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = _functions_of(tree)
        late = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and id(n) in inside
                and inside[id(n)] != "_main" and (n.level or (n.module or "").startswith("fix7_pipeline"))]
        assert not late, f"core/{path.relative_to(CORE)}:{late}: import it at the top of the module"


def _writes_environment(node: ast.AST, os_names: set[str], environ_names: set[str]) -> bool:
    """Whether `node` writes the process environment: through os.environ (however os or environ is imported
    or named), os.putenv or os.unsetenv."""
    def environ(n: ast.AST) -> bool:
        return (isinstance(n, ast.Attribute) and n.attr == "environ" and isinstance(n.value, ast.Name)
                and n.value.id in os_names) or (isinstance(n, ast.Name) and n.id in environ_names)

    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        return any(isinstance(t, ast.Subscript) and environ(t.value) for t in targets)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        f = node.func
        return (environ(f.value) and f.attr in {"update", "setdefault", "pop", "popitem", "clear"}) or \
            (isinstance(f.value, ast.Name) and f.value.id in os_names and f.attr in {"putenv", "unsetenv"})
    return False


def test_the_environment_is_written_in_one_function_never_at_import_time():
    home = CORE / "shared" / "environment.py"
    for path in [*PACKAGE.rglob("*.py"), *BENCHMARKS.rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = _functions_of(tree)
        os_names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names if a.name == "os"}
        environ_names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                         and n.module == "os" for a in n.names if a.name in ("environ", "putenv", "unsetenv")}
        for node in ast.walk(tree):
            if _writes_environment(node, os_names, environ_names) or (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in environ_names
                    and node.func.id != "environ"):
                assert path == home and inside.get(id(node)) == "set_environment", \
                    f"{path}:{node.lineno} writes os.environ: call core/shared/environment.set_environment"
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                    "set_environment":
                assert id(node) in inside, f"{path}:{node.lineno} sets the environment at import time"
