"""The shape of the code (issues 16, 27): imports flow one way, functions stay short, the CLI only parses.

Read from the source with :mod:`ast`, so these hold for every module, imported by a test or not. Every
module of ``cafe_cache``, ``cli`` and ``bench`` lies in one room of :data:`LEVELS` (README, "Where the code
is"); a module imports its own room and the levels below, never a level above nor a sibling room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cafe_cache", "cli", "bench")
MAX_FUNCTION_LINES = 80

# The rooms, bottom to top: one level is a dict of sibling rooms (room -> its modules; ``X.*`` is the package X
# and everything in it). A sibling room is as far away as a higher level: train, evaluation, deployment and
# reports read runs through run/ and never import each other.
L = "cafe_cache."
LEVELS: list[dict[str, tuple[str, ...]]] = [
    {"base": ("cafe_cache", L + "version", L + "errors", L + "messages", L + "options", L + "bounds", L + "files",
              L + "classes", L + "paper", L + "signals", L + "progress", L + "device", L + "distributed",
              L + "metrics", L + "results", L + "history")},
    {"datasets": (L + "datasets.*",), "synth": (L + "synth",)},
    {"extract": (L + "extract.*",)},
    {"model": (L + "model.*",)},
    {"run": (L + "run.*",)},
    {"train": (L + "train.*",), "evaluate": (L + "evaluate.*",), "predict": (L + "predict.*",),
     "report": (L + "report", L + "figures", L + "gradcam")},
    {"application": (L + "pipeline", L + "reproduce", L + "steps", L + "lodo", L + "models_study", L + "zeroshot")},
    {"cli": ("cli.*",), "bench": ("bench.*",)},
]


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
    assert "bench.machine" in g["bench.run"]  # bench/ is read too
    assert len(g) > 40


def _in(module: str, member: str) -> bool:
    package = member.removesuffix(".*")
    return module == package or (member.endswith(".*") and module.startswith(package + "."))


def room_of(module: str) -> tuple[int, str] | None:
    """(level, room) of a module, None when no room holds it."""
    found = [(level, room) for level, rooms in enumerate(LEVELS) for room, members in rooms.items()
             if any(_in(module, m) for m in members)]
    assert len(found) <= 1, f"{module} is in several rooms: {found}"
    return found[0] if found else None


def back_edges(g: dict[str, set[str]]) -> list[str]:
    """Every import of a higher level or of a sibling room on the same level."""
    out = []
    for name, targets in g.items():
        level, room = room_of(name)
        for target in sorted(targets):
            t_level, t_room = room_of(target)
            if t_level > level or (t_level == level and t_room != room):
                out.append(f"{name} ({room}) imports {target} ({t_room})")
    return out


def test_every_module_lies_in_a_room():
    assert room_of("cafe_cache.new_module") is None  # a new top-level module is in no room until listed
    homeless = sorted(name for name in graph() if room_of(name) is None)
    assert not homeless, f"modules in no room of LEVELS (add them there and to the README): {homeless}"


def test_no_room_imports_a_higher_or_sibling_room():
    assert not back_edges(graph()), back_edges(graph())


@pytest.mark.parametrize("source, target", [
    ("cafe_cache.run.folder", "cafe_cache.train.loop"),  # runs <-> train (issue 27)
    ("cafe_cache.report", "cafe_cache.train.sources"),  # report -> train (a sibling room)
    ("cafe_cache.pipeline", "cli.train"),  # the library on the command line
    ("cafe_cache.predict.infer", "cafe_cache.train.loop"),  # deployment on training (a sibling room)
    ("cafe_cache.predict.package", "cafe_cache.reproduce"),  # deployment on the application
    ("cafe_cache.train.loop", "cafe_cache.evaluate.targets"),  # training on evaluation (a sibling room)
    ("cafe_cache.extract.writer", "cafe_cache.model.cafe"),  # stage one on the model
    ("cli.main", "bench.run"),  # siblings
])
def test_the_room_check_refuses_a_back_edge(source, target):
    """The checker itself: each arrow the issue named counts as a back-edge."""
    assert back_edges({source: {target}})


@pytest.mark.parametrize("source, target", [
    ("cafe_cache.train.loop", "cafe_cache.run.checkpoint"), ("cafe_cache.predict.infer", "cafe_cache.run.checkpoint"),
    ("cafe_cache.pipeline", "cafe_cache.report"), ("cafe_cache.run.folder", "cafe_cache.run.config"),
    ("bench.run", "cafe_cache.train.loop"), ("cafe_cache.report", "cafe_cache.run.data"),
    ("cafe_cache.extract.layout", "cafe_cache.version"), ("cafe_cache.predict.package", "cafe_cache.run.official"),
])
def test_the_room_check_allows_a_downward_edge(source, target):
    assert not back_edges({source: {target}})


def test_no_module_imports_one_that_imports_it_back():
    g = graph()
    cycles = sorted(name for name in g if name in reachable(g, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_training_never_imports_evaluation():
    """Evaluation may import training code, never the reverse."""
    g = graph()
    assert not any(m.startswith("cafe_cache.evaluate") for t in g if t.startswith("cafe_cache.train")
                   for m in reachable(g, t))


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


def test_deployment_and_reports_load_no_training_code():
    """The room order at run time: importing the Python API, `cafe package` and the reports loads no module of
    train/, evaluate/ or the application (a deployment does not carry training)."""
    import subprocess
    import sys

    code = ("import sys, cafe_cache.predict.recognizer, cafe_cache.predict.package, cafe_cache.report\n"
            "print(' '.join(m for m in sys.modules if m.startswith(('cafe_cache.train', 'cafe_cache.evaluate',"
            " 'cafe_cache.pipeline', 'cafe_cache.reproduce'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", out.stdout
