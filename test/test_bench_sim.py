"""Smoke test of the simulator benchmark: ``--quick`` runs the physics part, the sim node
probe and the lockstep stack (three real node processes) and writes what the README quotes.

No timing assertions (the numbers are noisy on a shared machine); only that every number
the README and the picture use is there and sane.
"""

from __future__ import annotations

import math

import pytest
from helpers.bench import finite_positive, run_quick

PARTS = ("physics", "sim_publish", "estimator", "planner", "rest")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_quick("bench_sim.py", tmp_path_factory.mktemp("bench") / "sim.json",
                     "sim_time_breakdown.png")


def test_physics_keys_the_readme_quotes(result: dict) -> None:
    for key in ("date", "machine", "command"):
        assert result[key], key
    for scene in ("baoding", "cube"):
        stats = result["scenes"][scene]
        assert result[f"rtf_{scene}"] == stats["rtf"]
        for key in ("rtf", "control_steps_per_s", "step_ms_p50", "step_ms_p99", "observe_us"):
            assert finite_positive(stats[key]), (scene, key)
        assert stats["step_ms_p99"] >= stats["step_ms_p50"]
        assert stats["physics_faults"] >= 0


def test_lockstep_stack_throughput_and_breakdown(result: dict) -> None:
    probe = result["sim_node_probe"]
    assert finite_positive(probe["physics_ms"]["mean"])
    assert finite_positive(probe["publish_ms"]["mean"])
    policies = result["stack"]["policies"]
    assert set(policies) == {"random", "mpc"}
    length = result["stack"]["episode_length"]
    for name, p in policies.items():
        assert p["steps"] == p["episodes"] * length, name
        assert finite_positive(p["steps_per_s"]), name
        assert result[f"lockstep_steps_per_s_{name}"] == p["steps_per_s"]
        assert finite_positive(result[f"lockstep_episode_s_{name}"])
        assert p["step_ms"]["n"] == p["steps"]
        assert p["step_ms"]["p99"] >= p["step_ms"]["p50"] > 0
        parts = p["breakdown_ms"]
        assert set(parts) == set(PARTS)
        assert all(math.isfinite(v) for v in parts.values())
        assert sum(parts.values()) == pytest.approx(p["step_ms"]["mean"])
        for key in ("physics", "sim_publish", "estimator"):
            assert parts[key] > 0, (name, key)
    assert policies["random"]["planner_sources"] == {"exploration": policies["random"]["steps"]}
    assert policies["mpc"]["planner_sources"] == {"mppi": policies["mpc"]["steps"]}
    assert finite_positive(policies["mpc"]["breakdown_ms"]["planner"])
    assert policies["mpc"]["plan_ms"]["p99"] >= policies["mpc"]["plan_ms"]["p50"] > 0
