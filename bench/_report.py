"""Shared by the benchmark scripts: print the one JSON line and rewrite the script's section of BENCHMARKS.md.

Each script owns one ``## name`` section. Running a script alone rewrites only its section; ``make bench`` runs every
script in turn, so after it every number in BENCHMARKS.md came from that run. A section is stamped with the date, the
commit (with ``+dirty`` when the tree has uncommitted changes) and the exact command.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Each section: one script under `bench/`, the exact command, when and on which commit it ran, and what it printed.
Ratios are measured side by side in one run; absolute numbers depend on the machine (here: 2 CPU cores, no GPU).
Re-run one script alone with its command (it rewrites its own section); `make bench` runs them all.
"""


def commit() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        # the benchmarks' own output does not make the code they ran dirty
        status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md"]
        dirty = subprocess.run(status, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def publish(name: str, result: dict, *, what: str, reading: str, minutes: float | None = None, table: str = "") -> None:
    """Print ``result`` as one JSON line and write the section ``name`` of BENCHMARKS.md (``table``: an optional
    Markdown table of the same numbers, for reading)."""
    line = json.dumps({"bench": name, **result})
    print(line)
    command = "python " + " ".join(shlex.quote(a) for a in [f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    took = f" ({minutes:.1f} min)" if minutes is not None else ""
    section = (
        f"## {name}\n\n{what.strip()}\n\n"
        f"- date: {_dt.date.today().isoformat()}, commit: {commit()}, command: `{command}`{took}\n"
        f"- result: `{line}`\n"
        f"- reading: {reading.strip()}\n" + (f"\n{table.strip()}\n" if table.strip() else "")
    )
    text = BENCHMARKS.read_text() if BENCHMARKS.is_file() else HEADER
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip("\n") + "\n")
