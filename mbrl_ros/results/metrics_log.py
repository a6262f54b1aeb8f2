"""``metrics.csv``: one row per episode, appended and flushed as each episode ends.

A crash loses at most the episode that was running; a restarted run appends to the file.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

METRIC_COLUMNS = (
    "episode", "iteration", "policy", "seed", "steps", "transitions", "return", "score",
    "tracking_error", "drop", "success", "plan_p50_ms", "plan_p99_ms", "misses",
    "model_version", "wall_s",
)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class MetricsLog:
    """Append-only CSV with the fixed ``METRIC_COLUMNS`` header."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(METRIC_COLUMNS)
        else:
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if tuple(header) != METRIC_COLUMNS:
                raise ValueError(f"{self.path} has columns {header}, expected {METRIC_COLUMNS}")

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one episode; every column must be present (extra keys are an error)."""
        self.extend([row])

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write several episodes with one flush to disk; all rows are checked first, so a
        bad one writes none."""
        cells = []
        for row in rows:
            missing = [c for c in METRIC_COLUMNS if c not in row]
            extra = [k for k in row if k not in METRIC_COLUMNS]
            if missing or extra:
                raise ValueError(f"metrics row: missing {missing}, unknown {extra}")
            cells.append([_cell(row[c]) for c in METRIC_COLUMNS])
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerows(cells)
            f.flush()
            os.fsync(f.fileno())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics file with numbers parsed (``policy`` stays a string)."""
    rows = []
    with Path(path).open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, text in raw.items():
                if key == "policy":
                    row[key] = text
                elif key in ("drop", "success"):
                    row[key] = bool(int(text))
                else:
                    number = float(text)
                    row[key] = int(number) if number.is_integer() and key != "return" else number
            rows.append(row)
    return rows
