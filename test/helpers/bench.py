"""Running a benchmark script's quick mode from a test and checking its numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def run_quick(script: str, out: Path, picture: str, timeout: float = 240.0) -> dict:
    """Run ``bench/<script> --quick --out <out>`` in ``out``'s folder; assert it succeeded and
    drew ``picture`` beside the result; return the result JSON."""
    proc = subprocess.run([sys.executable, str(BENCH_DIR / script), "--quick", "--out",
                           str(out)], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out.parent / picture).stat().st_size > 10_000
    return json.loads(out.read_text())


def finite_positive(value: object) -> bool:
    """A finite number > 0, or a list of them."""
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               and v > 0 for v in values)


def bench_module(name: str):
    """Import ``bench/<name>.py`` (its pure functions are tested directly)."""
    import importlib

    sys.path.insert(0, str(BENCH_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH_DIR))
