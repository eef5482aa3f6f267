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
