"""The ScoreTable (DESIGN.md): what ``thresher score`` produces, written and read here only.

``scores.parquet`` holds one row per pool example: ``id``, ``label``, ``index`` (in the pool dataset),
``max_target_cosine`` and ``near_duplicate`` (near-duplicates of target images: of the train split, or of the test
split when it was given, then also ``max_test_cosine`` and ``near_duplicate_test``), ``unreadable``, and one float
column per scorer (NaN for unreadable images). ``scores.json`` beside it is the table's report: the source and target
specs, the methods, the pool's class names, the near-duplicate summary, each method's report (parameters,
diagnostics, seconds and cost as if it ran alone) and the run's cost in C. The table is written last: a folder holding
it is a finished score run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import atomic
from ..errors import ThresherError, one_line

SCORES_FILE = "scores.parquet"
REPORT_FILE = "scores.json"
#: the columns of scores.parquet that are not a method's scores
TABLE_COLUMNS = ("id", "label", "index", "max_target_cosine", "near_duplicate", "unreadable", "max_test_cosine",
                 "near_duplicate_test")  # fmt: skip
COST_KEYS = ("images", "flops", "seconds")


@dataclass
class ScoreTable:
    """A score table and its report; ``path`` is the ``scores.parquet`` it was read from (None before writing)."""

    table: pa.Table
    report: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # --- files -----------------------------------------------------------------------------------------------
    @staticmethod
    def locate(path: str | Path) -> Path:
        """``scores.parquet`` given itself or the score run folder holding it; a clear error when there is none."""
        p = Path(path)
        p = p / SCORES_FILE if p.is_dir() else p
        if not p.is_file():
            raise ThresherError(f"{path}: no {SCORES_FILE} there; run thresher score first")
        return p

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether ``folder`` holds a finished score table."""
        return (Path(folder) / SCORES_FILE).is_file()

    @classmethod
    def read_report(cls, path: str | Path) -> dict[str, Any]:
        """The report of a finished score run alone (its costs, classes, ...), without reading the table."""
        report_file = cls.locate(path).parent / REPORT_FILE
        report = atomic.read_json(report_file, fix="re-run thresher score")
        if not isinstance(report, dict):
            raise ThresherError(f"{report_file} is not a JSON object; re-run thresher score")
        return report

    @classmethod
    def read(cls, path: str | Path) -> ScoreTable:
        """Read and check a table (a file or a score run folder) and its report."""
        path = cls.locate(path)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise ThresherError(
                f"cannot read {path} as a score table ({one_line(str(exc), 160)}); re-run thresher score"
            ) from None
        missing = [c for c in TABLE_COLUMNS[:3] if c not in table.column_names]
        if missing:
            raise ThresherError(
                f"{path} lacks column(s) {', '.join(missing)}, so it is not a thresher score table; re-run thresher "
                "score"
            )
        report_file = path.parent / REPORT_FILE
        report = atomic.read_json(report_file, fix="re-run thresher score") if report_file.is_file() else {}
        if not isinstance(report, dict):
            raise ThresherError(f"{report_file} is not a JSON object; re-run thresher score")
        return cls(table, report, path)

    def write(self, folder: str | Path) -> Path:
        """Write the report, then the table (atomically each): the table's presence marks a finished run."""
        folder = Path(folder)
        atomic.write_json(folder / REPORT_FILE, self.report)
        self.path = folder / SCORES_FILE
        atomic.write_with(self.path, lambda t: pq.write_table(self.table, t))
        return self.path

    # --- contents ---------------------------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        return [c for c in self.table.column_names if c not in TABLE_COLUMNS]

    def column(self, name: str) -> np.ndarray:
        if name not in self.table.column_names:
            raise ThresherError(f"{self.path} has no scores of method {name!r} (available: {', '.join(self.methods)})")
        return self.table.column(name).to_numpy(zero_copy_only=False)

    def flag(self, name: str) -> np.ndarray | None:
        """A boolean column (``near_duplicate``, ``unreadable``), or None when the table predates it."""
        return self.table.column(name).to_numpy() if name in self.table.column_names else None

    @property
    def ids(self) -> np.ndarray:
        return self.column("id")

    @property
    def labels(self) -> np.ndarray:
        return self.column("label")

    @property
    def indices(self) -> np.ndarray:
        return self.column("index")

    @property
    def classes(self) -> list[str] | None:
        return self.report.get("classes")

    @property
    def class_words(self) -> list[str] | None:
        """The pool's classes as a person reads them: the first words of each class's description (``goose``, not
        ``n01855672``), else its name."""
        words = self.report.get("class_words")
        return [w.split(",")[0].strip() for w in words] if words else self.classes

    def method_report(self, method: str) -> dict:
        return self.report.get("reports", {}).get(method, {})

    def method_cost(self, method: str) -> dict[str, float]:
        """What scoring with ``method`` cost, as if it ran alone (zeros for a method without a recorded cost)."""
        return method_cost(self.report, method)

    def paid(self, method: str) -> dict[str, Any]:
        """What scoring with ``method`` cost, for a selection's provenance: its cost as if it ran alone (the typed
        Cost's fields), its fraction of C and the unit, and the score run's total with shared models counted once."""
        run = self.report.get("cost", {})
        return {
            "cost": self.method_report(method).get("cost"),
            "C": run.get("methods_C", {}).get(method),
            "unit": run.get("unit"),
            "score_run_total": run.get("total"),
            "score_run_total_C": run.get("total_C"),
        }


def method_cost(report: dict[str, Any], method: str) -> dict[str, float]:
    """What scoring with ``method`` cost as if it ran alone, from a score report (zeros when none was recorded)."""
    cost = report.get("reports", {}).get(method, {}).get("cost", {})
    return {k: float(cost.get(k, 0.0)) for k in COST_KEYS}


def describe_cost(paid: dict[str, Any]) -> str:
    """One line for a method's scoring cost (``ScoreTable.paid``)."""
    cost = paid.get("cost") or {}
    if not cost:
        return "not recorded (a score run older than cost reporting)"
    line = f"{cost.get('flops', 0) / 1e12:.3g} TFLOPs, {cost.get('seconds', 0):.0f} s ({cost.get('kind')})"
    line += " as if run alone"
    if paid.get("C") is not None:
        line += f" = {paid['C']:.3f} C"
        if paid.get("score_run_total_C") is not None:
            line += f"; the score run's total {paid['score_run_total_C']:.3f} C"
        line += f" (C: {paid['unit']['what']})"
    return line
