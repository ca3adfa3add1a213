"""The house rules of the layout (../shared/STYLE.md, "Layout" and "The app side"), checked on
the source with `ast`, so that a lazy import inside a function counts as much as one at the top:

- library folders never import the command modules (`emotion.commands`);
- inference (`emotion.face`, `emotion.video`, `emotion.cnn`) never imports `emotion.training`;
- no import circle in `nnlite`;
- `emotion`, `emotion.face` and `emotion.training` import nothing when imported, so that a venv
  without Numba or pandas can still import the modules that need neither.

Each checker is also run on a small made-up tree that breaks its rule, so a checker that
silently finds nothing would fail here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LIBRARY_ROOMS = ("face", "video", "cnn", "training", "io", "serve", "batch")
INFERENCE_ROOMS = ("emotion.face", "emotion.video", "emotion.cnn")
# The emotion/ top level holds the entry points and what every room shares, nothing else.
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py", "errors.py", "labels.py"}


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known) -> set[str]:
    """The modules `name` imports, anywhere in it. `from P import n` is P.n when that is a
    module, else P; a string constant naming a known module counts too (importlib's lazy
    imports, e.g. nnlite.backends picking its kernel module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and "." in node.value and node.value in known):
            found.add(node.value)
    found.discard(name)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def inside(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def forbidden_imports(graph, importers, imported) -> list[str]:
    """'a imports b' for every module a in the rooms `importers` that imports one in `imported`."""
    return sorted(
        f"{a} imports {b}"
        for a, targets in graph.items() if any(inside(a, room) for room in importers)
        for b in targets if any(inside(b, room) for room in imported)
    )


def circles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# -- the rules on this repository ------------------------------------------------------------
def test_emotion_top_level_holds_only_the_entry_points_and_the_rooms():
    files = {p.name for p in (REPO / "emotion").glob("*.py")}
    assert files <= TOP_LEVEL, f"modules outside a room: {sorted(files - TOP_LEVEL)}"
    for room in ("commands", *LIBRARY_ROOMS):
        assert (REPO / "emotion" / room / "__init__.py").is_file(), f"emotion/{room}/ missing"


def test_library_rooms_never_import_the_commands():
    graph = import_graph(REPO, "emotion")
    library = [f"emotion.{room}" for room in LIBRARY_ROOMS]
    assert forbidden_imports(graph, library, ["emotion.commands", "emotion.cli"]) == []


def test_inference_never_imports_training():
    graph = import_graph(REPO, "emotion")
    assert forbidden_imports(graph, INFERENCE_ROOMS, ["emotion.training"]) == []


def test_nnlite_has_no_import_circle():
    assert circles(import_graph(REPO, "nnlite")) == []


def test_package_inits_import_nothing():
    for init in ("emotion/__init__.py", "emotion/face/__init__.py",
                 "emotion/training/__init__.py"):
        tree = ast.parse((REPO / init).read_text())
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                   and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
        assert imports == [], f"{init} imports at the top: {[ast.unparse(n) for n in imports]}"


def test_importing_emotion_loads_neither_nnlite_nor_numba():
    code = ("import sys, emotion, emotion.face, emotion.training; "
            "print(sorted(m for m in ('nnlite', 'numba', 'pandas', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


# -- the checkers catch what they are for ----------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checkers_find_a_library_module_importing_a_command(tmp_path):
    root = _tree(tmp_path, {
        "emotion/__init__.py": "",
        "emotion/commands/__init__.py": "",
        "emotion/commands/predict.py": "",
        "emotion/serve/__init__.py": "",
        "emotion/serve/app.py": "def f():\n    from emotion.commands import predict\n",
        "emotion/face/__init__.py": "",
        "emotion/face/pose.py": "def g():\n    import emotion.training.trainer\n",
        "emotion/training/__init__.py": "",
        "emotion/training/trainer.py": "",
    })
    graph = import_graph(root, "emotion")
    assert forbidden_imports(graph, ["emotion.serve"], ["emotion.commands"]) == [
        "emotion.serve.app imports emotion.commands.predict"]
    assert forbidden_imports(graph, INFERENCE_ROOMS, ["emotion.training"]) == [
        "emotion.face.pose imports emotion.training.trainer"]


def test_checkers_find_a_circle_through_a_lazy_import(tmp_path):
    root = _tree(tmp_path, {
        "nnlite/__init__.py": "",
        "nnlite/random.py": "from nnlite import backends\n",
        "nnlite/backends/__init__.py": "import importlib\n"
                                       "def k():\n"
                                       "    return importlib.import_module('nnlite.backends.k')\n",
        "nnlite/backends/k.py": "from nnlite import random\n",
        "nnlite/device.py": "",
    })
    assert circles(import_graph(root, "nnlite")) == [
        ["nnlite.backends", "nnlite.backends.k", "nnlite.random"]]
