"""The code's shape, checked: no import cycles (imports inside functions included), the library never imports the
harness, no dispatch on `hasattr(model, ...)`, ruff's lint and format clean, and in the sweep harness (bench/sweep)
no function a reader cannot hold at once (over MAX_FUNCTION_LINES lines or MAX_PARAMETERS parameters). Files are not
limited in size: a file holds one concept, however long."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lae", "bench")
MAX_FUNCTION_LINES = 60  # bench/sweep: a function's lines, its docstring included
MAX_PARAMETERS = 6  # bench/sweep: a function's parameters, self and cls not counted


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def file_of(module: str) -> Path | None:
    """The file that defines `module` (a .py file or a package's __init__.py), None outside lae/bench."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """Every lae/bench file that `path` imports, at any depth of the file (function bodies included)."""
    tree = ast.parse(path.read_text())
    here = module_of(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name`: the submodule pkg.name when it is a file, else pkg itself
            targets = [f"{base}.{a.name}" if file_of(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES and (f := file_of(target)) is not None and f != path:
                out.add(f)
    return out


def function_shapes(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, lines, parameters) of every function in a file; self and cls are not counted."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            n = len([x for x in names if x not in ("self", "cls")]) + bool(a.vararg)
            out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1, n))
    return out


def test_sweep_functions_are_short_and_take_few_parameters():
    shapes = [s for p in sorted((ROOT / "bench" / "sweep").rglob("*.py")) for s in function_shapes(p)]
    long = [f"{name} ({n} lines)" for name, n, _ in shapes if n > MAX_FUNCTION_LINES]
    wide = [f"{name} ({k} parameters)" for name, _, k in shapes if k > MAX_PARAMETERS]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    assert not wide, f"functions with more than {MAX_PARAMETERS} parameters: {wide}"


def test_the_shape_check_measures_lines_and_parameters(tmp_path, monkeypatch):
    """The checker itself: lines from def to the last line, parameters without self, *args counted once."""
    source = "class C:\n    def f(self, a, b=1, *args, c, **kw):\n        x = a\n        return x\n"
    (tmp_path / "m.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert function_shapes(tmp_path / "m.py") == [("m.py:2 f", 3, 4)]


def test_no_import_cycle_between_files():
    graph = {p: imported_files(p) for p in sources()}
    state: dict[Path, int] = {}  # 1 on the stack, 2 done

    def visit(node: Path, stack: list[Path]):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_the_cycle_check_catches_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two files importing each other (one inside a function) form a cycle."""
    pkg = tmp_path / "lae"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lae import b\n")
    (pkg / "b.py").write_text("def f():\n    from lae.a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_files(pkg / "a.py") == {pkg / "b.py"} and imported_files(pkg / "b.py") == {pkg / "a.py"}


def test_the_library_never_imports_the_harness():
    bad = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "lae").rglob("*.py")
        if any(f.is_relative_to(ROOT / "bench") for f in imported_files(p))
    ]
    assert not bad, f"lae/ files importing bench: {bad}"


def test_no_capability_dispatch_on_hasattr():
    bad = [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for p in sources()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr"
    ]
    assert not bad, f"hasattr dispatch (ask the model's interface instead): {bad}"


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is not installed (pip install -e '.[test]' installs it)",
)
def test_ruff_lint_and_format_are_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    lint = subprocess.run([ruff, "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run([ruff, "format", "--check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]
