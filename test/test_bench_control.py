"""Smoke test of the control-loop benchmark: ``bench/bench_control.py --quick`` runs the real
stack for a few seconds and writes a result file with sane numbers (no timing bounds: the
machine is shared). Also checks the bench's pairing of commands with the states they were
planned from on a hand-made tick sequence."""

from __future__ import annotations

import functools
import math

import pytest
from helpers.bench import bench_module, run_quick


def _record(bench, ticks: int, step: int, *, fresh: bool, misses: int, received: float,
            planner: str = "mppi"):
    return bench.ActionRecord(received=received, sent=received, ticks=ticks, misses=misses,
                              episode=0, step=step, fallback=not fresh, fresh=fresh,
                              planner=planner, num_samples=700, model_version=1)


def test_commands_are_paired_with_the_state_their_plan_started_from():
    bench = bench_module("bench_control")
    r = functools.partial(_record, bench)
    actions = [
        r(1, 0, fresh=False, misses=0, received=1.0),  # no plan yet: starts one from state 0
        r(2, 1, fresh=True, misses=0, received=2.0),  # executes the plan from 0, plans from 1
        r(3, 1, fresh=False, misses=1, received=3.0),  # late: still busy, starts nothing
        r(4, 2, fresh=True, misses=2, received=4.0),  # the late plan (from 1); plans from 2
        r(5, 2, fresh=True, misses=2, received=5.0),  # from 2 (first); plans from 2 again
        r(6, 3, fresh=True, misses=2, received=6.0),  # from 2 again: not the first
        r(8, 4, fresh=True, misses=2, received=8.0),  # a tick was lost: source unknown
        r(9, 5, fresh=True, misses=2, received=9.0),  # from 4
        r(10, 5, fresh=False, misses=2, received=10.0, planner="hold"),
        r(11, 6, fresh=True, misses=2, received=11.0),  # after a hold: unknown
    ]
    # Tick 6's plan (from state 3) is never executed in this sequence; tick 8's is unknown.
    assert bench.first_commands(actions[::-1]) == {(0, 0): 2.0, (0, 1): 4.0, (0, 2): 5.0,
                                                   (0, 4): 9.0}


def test_period_errors_are_absolute_deviations_in_ms():
    bench = bench_module("bench_control")
    errors = bench.period_errors_ms([0.0, 0.1, 0.25, 0.3], 0.1)
    assert errors == pytest.approx([0.0, 50.0, 50.0])
    assert bench.period_errors_ms([1.0], 0.1).size == 0


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_run_writes_sane_results(tmp_path):
    result = run_quick("bench_control.py", tmp_path / "control.json", "control.png")
    for key in ("date", "machine", "command", "setup", "configs"):
        assert key in result, key
    assert result["quick"] is True
    assert (tmp_path / "control.png").stat().st_size > 10_000
    stats = result["configs"]["30hz_n200"]
    assert stats["rate_hz"] == 30.0 and stats["num_samples"] == 200
    assert stats["ticks"] > 0 and stats["commands_received"] > 0
    for name in ("period_error_ms", "send_period_error_ms", "plan_ms", "state_to_command_ms"):
        s = stats[name]
        assert s["n"] > 0, name
        assert all(_finite(s[k]) for k in ("p50", "p99", "max")), (name, s)
        assert s["max"] >= s["p99"] >= s["p50"] >= 0, (name, s)
    assert stats["plan_ms"]["p50"] > 0
    # A plan is executed at the earliest one period after its state came in.
    assert stats["state_to_command_ms"]["p50"] > 0.5 * stats["period_ms"]
    assert 0 <= stats["misses_per_1000"] <= 1000
    assert 0 <= stats["deadline_misses"] <= stats["ticks"]
    training = stats["training"]
    assert training["ran_concurrently"], training
    assert training["trainer_cpu_s"] > 0, training
    assert stats["model_versions"][0] >= 1
    assert "mppi" in stats["planners_seen"]
    assert all(_finite(v) and v >= 0 for v in stats["cpu_fraction"].values())
