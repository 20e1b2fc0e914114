"""The shape of the code (issue 16): imports flow one way, functions stay short, the CLI only parses.

Read from the source with :mod:`ast`, so these hold for every module, imported by a test or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cafe_cache", "cli")
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the two packages (a package is its ``__init__``)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (lazy imports inside functions too):
    ``from pkg import x`` counts as importing ``pkg.x`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def reachable(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in g[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_import_graph_finds_real_edges():
    """The checker itself: known arrows are seen (a checker that saw none would pass everything)."""
    g = graph()
    assert "cafe_cache.extract.writer" in g["cafe_cache.extract.loop"]
    assert "cafe_cache.datasets.registry" in g["cafe_cache.datasets.rafdb"]
    assert "cafe_cache.datasets.rafdb" in g["cafe_cache.datasets"]  # `from . import rafdb` in the package
    assert len(g) > 40


def test_no_module_imports_one_that_imports_it_back():
    g = graph()
    cycles = sorted(name for name in g if name in reachable(g, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_training_never_imports_evaluation():
    """Evaluation may import training code, never the reverse."""
    g = graph()
    assert "cafe_cache.train.evaluate" not in reachable(g, "cafe_cache.train.loop")


def test_the_cli_holds_no_h5py_and_no_training_code():
    """cli/ parses, calls one library function and prints: no h5py, no torch, no optimiser."""
    offenders = []
    for path in sorted((REPO / "cli").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in ("h5py", "torch")]
    assert not offenders, offenders


def long_functions() -> list[str]:
    out = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_is_longer_than_80_lines():
    assert not long_functions(), long_functions()


@pytest.mark.parametrize("source, expected", [("def f():\n" + "    x = 1\n" * 85, 1), ("def f():\n    pass\n", 0)])
def test_the_length_check_sees_a_long_function(tmp_path, monkeypatch, source, expected):
    (tmp_path / "cafe_cache").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "cafe_cache" / "m.py").write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", tmp_path)
    assert len(long_functions()) == expected
