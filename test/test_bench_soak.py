"""Smoke test of the soak benchmark: ``bench/bench_soak.py --quick`` runs the whole stack
through the launcher for about 50 s on a tiny budget, stops it cleanly and writes a result
with every process's memory and threads and the transition accounting. Also checks the
bench's counting and accounting on hand-made inputs (no ROS)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.bench import bench_module, run_quick

NODES = ("shadow_hand_sim", "state_estimator", "dynamics_trainer", "mpc_planner",
         "experiment", "launcher")



def test_a_transition_needs_its_action_and_the_next_state_within_the_episode():
    bench = bench_module("bench_soak")
    states = {(1, k) for k in range(4)} | {(2, 0), (2, 1)}
    actions = {(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1)}
    # episode 1 (length 3): step 3 is past the end; episode 2: step 1 has no next state yet
    assert bench.executed_per_episode(states, actions, {1: 3, 2: 3}) == {1: 3, 2: 1}
    # an episode without a schedule is open-ended
    assert bench.executed_per_episode({(5, 0), (5, 1)}, {(5, 0)}, {}) == {5: 1}


def test_the_stop_cut_episode_is_accounted_apart_from_complete_ones():
    bench = bench_module("bench_soak")
    states = {(e, k) for e in (1, 2) for k in range(4)} | {(3, 0), (3, 1), (3, 2)}
    finished = bench.finished_episodes(states, {1: 3, 2: 3, 3: 3})
    assert finished == {1, 2}
    acc = bench.transition_accounting(executed={1: 3, 2: 3, 3: 2}, lengths={1: 3, 2: 3, 3: 3},
                                      recorded={1: 3, 2: 3, 3: 1}, ends={3: ["flushed"]},
                                      finished=finished, observed_from=1)
    assert acc["executed"] == 8 and acc["recorded"] == 7
    assert acc["not_observed"]["episodes"] == 0
    assert acc["difference_complete_episodes"] == 0
    assert acc["cut_episode"]["episode_id"] == 3
    assert acc["cut_episode"]["difference"] == -1
    assert acc["episodes_with_a_difference"] == []
    acc = bench.transition_accounting({1: 3, 2: 3}, {1: 3, 2: 3}, {1: 2, 2: 3}, {}, {1, 2}, 1)
    assert acc["cut_episode"] is None
    assert acc["episodes_with_a_difference"][0]["episode_id"] == 1
    # episodes before the bench saw the stream are set apart, not compared
    acc = bench.transition_accounting({2: 1, 3: 3}, {2: 3, 3: 3}, {1: 3, 2: 3, 3: 3}, {},
                                      {1, 2, 3}, 3)
    assert acc["not_observed"] == {"episodes": 2, "episode_ids": [1, 2], "recorded": 6}
    assert acc["executed"] == acc["recorded"] == 3 and acc["recorded_all"] == 9


def test_an_episode_the_bench_saw_drop_ends_there_without_its_shortened_schedule():
    bench = bench_module("bench_soak")
    # episode 1 dropped at state 2; its shortened schedule never reached the bench
    lengths = bench.episode_lengths({1: 5, 2: 5, 3: 0}, {1: 2, 3: 4})
    assert lengths == {1: 2, 2: 5, 3: 0}
    states = {(1, k) for k in range(3)} | {(2, k) for k in range(4)} | {(4, 0)}
    assert bench.finished_episodes(states, lengths) == {1}
    acc = bench.transition_accounting({1: 2, 2: 3, 4: 0}, {**lengths, 4: 5}, {1: 2, 2: 3}, {},
                                      {1}, 1, states)
    # episode 2 stopped at state 3 of 5 and episode 4 is the one the stop cut
    assert acc["episodes_not_run_to_the_end"] == 1
    assert acc["short_episodes"] == [{"episode_id": 2, "length": 5, "last_state_seen": 3,
                                      "ends": []}]


def test_the_bench_compares_from_the_first_episode_it_saw_on_both_streams():
    bench = bench_module("bench_soak")
    # schedule and states of episode 2 from step 0, but the planner matched only later
    states = {(2, 0), (2, 1), (3, 0), (3, 1), (4, 0)}
    actions = {(2, 1), (3, 0)}
    assert bench.first_observed_episode(states, actions) == 3
    assert bench.first_observed_episode({(5, 0), (5, 1)}, {(5, 1)}) is None
    # realtime: no action at step 0, the previous episode vouches for both streams
    assert bench.first_observed_episode({(1, 3), (2, 0), (2, 1)}, {(1, 2), (2, 1)}) == 2
    # the schedules of episodes 3 and 4 came, not episode 2's: its length is unknown
    assert bench.first_observed_episode(states, {(2, 0), (3, 0), (4, 0)}, {3, 4}) == 3
    assert bench.first_observed_episode(states, {(2, 0), (3, 0), (4, 0)}) == 2


def test_growth_is_a_least_squares_slope_in_mb_per_hour():
    bench = bench_module("bench_soak")
    t = np.array([0.0, 1800.0, 3600.0, 5400.0])
    assert bench.growth_mb_per_hour(t, 100.0 + 2.0 * t / 3600.0) == pytest.approx(2.0)
    assert math.isnan(bench.growth_mb_per_hour(t[:2], np.array([1.0, 2.0])))
    assert bench.warmup_end(1000.0, None) == pytest.approx(100.0)
    assert bench.warmup_end(1000.0, 300.0) == pytest.approx(300.0)
    assert bench.warmup_end(1000.0, 900.0) == pytest.approx(500.0)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.ros
def test_quick_soak_reports_every_process_and_loses_no_transition(tmp_path):
    result = run_quick("bench_soak.py", tmp_path / "soak.json", "soak_memory.png",
                       timeout=180.0)
    for key in ("date", "machine", "command", "setup", "processes", "transitions"):
        assert key in result, key
    assert result["setup"]["quick"] is True and result["setup"]["mode"] == "lockstep"
    assert set(NODES) <= set(result["processes"]), sorted(result["processes"])
    for name in NODES:
        stats = result["processes"][name]
        for key in ("rss_warm_mb", "rss_end_mb", "rss_max_mb", "rss_growth_mb_per_hour",
                    "pss_end_mb", "pss_growth_mb_per_hour", "anon_end_mb", "cpu_s"):
            assert _finite(stats[key]), (name, key, stats[key])
        assert stats["rss_max_mb"] >= stats["rss_end_mb"] > 0, (name, stats)
        assert stats["threads_min"] > 0 and stats["threads_end"] > 0, (name, stats)
        assert stats["threads_max"] >= stats["threads_end"] >= stats["threads_min"]
        assert stats["respawns"] == 0, (name, stats["pids"], result["error_lines"])
        assert stats["samples"] >= 5, (name, stats["samples"])
    assert result["trainings"]["accepted"] >= 1
    assert result["first_model_s"] is not None
    assert result["stop"]["launcher_exit_code"] == 0

    acc = result["transitions"]
    assert acc["executed"] > 0
    assert acc["recorded_on_disk"] == acc["recorded_all"] == (
        acc["recorded"] + acc["not_observed"]["recorded"])
    assert acc["complete_episodes"] >= 10, acc  # the bench saw most of the run
    # Every episode that ran to its end is stored exactly as it was executed ...
    assert acc["difference_complete_episodes"] == 0, acc["episodes_with_a_difference"]
    assert acc["episodes_with_a_difference"] == []
    assert acc["episodes_not_run_to_the_end"] == 0
    # ... and only the episode the stop cut may differ, by no more than what it executed.
    cut = acc["cut_episode"]
    slack = 0 if cut is None else max(cut["executed"], cut["recorded"])
    assert abs(acc["recorded"] - acc["executed"]) <= slack, acc
    assert acc["recorded"] == acc["recorded_complete_episodes"] + (
        0 if cut is None else cut["recorded"])
