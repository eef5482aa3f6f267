"""The code's layout keeps each piece of knowledge in one place (issue 16): checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src" / "thresher"


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant of a module but its docstrings, with its line (f-string parts included)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_checkpoint_file_name_is_written_once():
    """models/checkpoint.py owns the checkpoint format: every other module asks it where a run's checkpoint is."""
    found = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line, text in _strings(ast.parse(path.read_text()))
        if "checkpoint.pt" in text
    ]
    assert found == [f"{Path('models') / 'checkpoint.py'}:{_line_of_constant()}"], found


def _line_of_constant() -> int:
    text = (SRC / "models" / "checkpoint.py").read_text().splitlines()
    return next(i for i, ln in enumerate(text, 1) if ln.startswith("CHECKPOINT_FILE = "))


def test_thresher_checkpoints_are_read_and_written_by_their_owner():
    """No module but models/checkpoint.py calls torch.load or torch.save on a checkpoint."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "models" / "checkpoint.py" or path == SRC / "atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("load", "save")
                and getattr(node.value, "id", "") == "torch"
            ):
                calls.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert calls == [], calls


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The thresher modules ``path`` imports, at module level or inside functions: ``from X import y`` counts as
    module ``X.y`` when that is a module, else as ``X`` (a name defined in X, or in the package X's __init__)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != here}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through every strongly connected component larger than one module (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycles():
    """No module imports, directly or through others, a module that imports it back (issue 16)."""
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_imports_only_what_installing_it_installs():
    """``pip install thresher`` (what `make demo` does) installs the core dependencies; the extras (timm, hf, faiss,
    ray) are imported behind their own checks. A package only the dev extras bring (scipy, scikit-learn) imported by
    the package itself works in `make test` and fails for every user: found here, on the source."""
    import re
    import sys
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    import_names = {"pillow": "PIL", "pyyaml": "yaml", "datasets": "datasets", "faiss-cpu": "faiss"}

    def names(reqs: list[str]) -> set[str]:
        return {import_names.get(n, n.replace("-", "_")) for n in (re.split(r"[<>=\[ ]", r)[0] for r in reqs)}

    extras = {k: v for k, v in meta["optional-dependencies"].items() if k != "dev"}
    allowed = names(meta["dependencies"]) | {n for v in extras.values() for n in names(v)} | {"huggingface_hub"}
    allowed |= set(sys.stdlib_module_names) | {"thresher", "__future__"}
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(a.name.split(".")[0], path.relative_to(SRC).as_posix()) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((node.module.split(".")[0], path.relative_to(SRC).as_posix()))
    assert sorted((n, p) for n, p in found if n not in allowed) == []
