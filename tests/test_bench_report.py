"""bench/_report.publish: one section per script, rewritten in place, stamped with date, commit and command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import _report  # noqa: E402


def test_sections_are_added_then_rewritten_in_place(tmp_path, monkeypatch, capsys):
    target = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(_report, "BENCHMARKS", target)
    monkeypatch.setattr(sys, "argv", ["bench/a.py", "--scale", "2"])
    _report.publish("alpha", {"x": 1}, what="first", reading="r1")
    _report.publish("beta", {"y": 2}, what="second", reading="r2", minutes=1.5)
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {"bench": "alpha", "x": 1}
    _report.publish("alpha", {"x": 3}, what="first again", reading="r3")
    text = target.read_text()
    assert text.startswith("# Benchmarks") and text.count("## alpha") == 1 and text.count("## beta") == 1
    assert '"x": 3' in text and '"x": 1' not in text and text.index("## alpha") < text.index("## beta")
    assert "`python bench/a.py --scale 2`" in text and "(1.5 min)" in text and "commit: " in text


def test_every_bench_script_imports():
    """Moves in src/ reach bench/: every script imports (its main() is not run), so a stale import fails here."""
    import importlib.util

    scripts = sorted((Path(__file__).resolve().parent.parent / "bench").glob("*.py"))
    assert len(scripts) >= 10
    for path in scripts:
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
