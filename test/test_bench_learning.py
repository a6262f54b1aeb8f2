"""`make bench-learning` on its smoke budget: every kind of run, the aggregate, resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "results" / "learning.json"
    cmd = [sys.executable, str(BENCH / "bench_learning.py"), "--budget", "smoke",
           "--tasks", "baoding", "--planners", "mppi", "--seeds", "0",
           "--parts", "learned,true,sac,true_state",
           "--runs", str(tmp_path / "runs"), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.timeout(400)
def test_smoke_budget_runs_everything_and_resumes(tmp_path):
    log, result = _run(tmp_path)
    baoding = result["tasks"]["baoding"]
    learned = baoding["learned"]["mppi"]
    # Iteration 0 (random policy) and iteration 1 (MPC), at growing amounts of data.
    assert len(learned["return"]) == 2
    assert learned["transitions"][1] > learned["transitions"][0] > 0
    assert all(lo <= m <= hi for lo, m, hi in
               zip(learned["return_min"], learned["return"], learned["return_max"], strict=True))
    assert baoding["true_model"]["mppi"]["episodes"] == 1
    assert baoding["hold"]["episodes"] == 1
    assert baoding["sac"]["transitions"][0] == 0 and baoding["sac"]["transitions"][-1] > 0
    assert baoding["data_efficiency"]["return"]["metric"] == "return"
    assert baoding["data_efficiency"]["score"]["metric"] == "score"
    assert "gap_closed" in baoding["learned_vs_true"]["mppi"]
    summary = result["summary"]  # the names issue 13 fixes for machine readers
    perfect = summary["baoding"]["perfect_model"]
    assert perfect["seeds"] == 1 and perfect["episodes"] == 1
    assert {"drop_rate", "success_rate", "tracking_error"} <= set(perfect)
    learned_mppi = summary["baoding"]["learned_mppi"]
    assert {"seeds", "transitions", "drop_rate", "success_rate", "score",
            "score_ratio_to_perfect", "transitions_to_criterion"} <= set(learned_mppi)
    assert learned_mppi["transitions"] == learned["transitions"][-1]
    assert summary["throughput"]["transitions_per_hour"] > 0
    assert summary["throughput"]["machine"]
    state_only = summary["baoding"]["perfect_model_state_only"]  # planning from the state
    assert state_only["episodes"] == 1 and 0.0 <= state_only["drop_rate"] <= 1.0
    assert result["runs_completed"] == result["runs_planned"] == 5
    assert Path(result["pictures"][0]).stat().st_size > 10_000
    rows = (tmp_path / "runs" / "baoding_mppi_learned_seed0" / "metrics.csv").read_text()

    log, again = _run(tmp_path)  # everything is done: nothing runs twice
    assert "[1/" not in log
    assert (tmp_path / "runs" / "baoding_mppi_learned_seed0" / "metrics.csv").read_text() == rows
    assert again["tasks"]["baoding"]["learned"] == baoding["learned"]

    # the learned run's checkpoints and data feed the closed-loop and warm-start benches
    run = tmp_path / "runs" / "baoding_mppi_learned_seed0"
    models = sorted((run / "models").glob("iteration_*.model"))
    # an earlier evaluation of a checkpoint this call does not pick stays in the file
    earlier = {"iteration": 0, "transitions": 40, "by_variant": {"moderate": {
        "drop_rate": 0.5, "success_rate": 0.25, "steps": 8.0, "tracking_error": 0.05,
        "score": -0.2}}}
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "bench_checkpoints.json").write_text(json.dumps(
        {"episodes": 1, "inference_dtype": "float32", "checkpoints": [earlier]}))
    for script, args in (("bench_closed_loop.py", ["--model", str(models[-1]), "--episodes", "1"]),
                         ("bench_warm_start.py", ["--run", str(run), "--back", "0",
                                                  "--warm-epochs", "1"]),
                         ("bench_checkpoints.py", ["--run", str(run), "--every", "1",
                                                   "--episodes", "1", "--variants",
                                                   "pddm,moderate", "--dtype", "float32",
                                                   "--perfect-runs", str(tmp_path / "runs")]),
                         ("bench_model_levers.py", ["--run", str(run), "--levers",
                                                    "as_run,probabilistic", "--episodes", "1",
                                                    "--variants", "moderate", "--dtype",
                                                    "float32", "--perfect-runs",
                                                    str(tmp_path / "runs")]),
                         ("bench_plan_fidelity.py", ["--models", str(models[-1]), "--episodes",
                                                     "1", "--every", "10", "--subset", "20",
                                                     "--dtype", "float32"]),
                         ("bench_drop_foresight.py", ["--run", str(run), "--iteration", "1",
                                                      "--held-out", "1", "--steps", "1,2"])):
        out = tmp_path / "results" / script.replace(".py", ".json")
        proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        result = json.loads(out.read_text())
        if script == "bench_checkpoints.py":
            kept, row = result["checkpoints"]  # the smoke run trains one model (iteration 1)
            assert kept == earlier
            assert row["iteration"] == 1 and row["transitions"] > 0
            assert set(row["by_variant"]) == {"pddm", "moderate"}
            assert 0.0 <= row["by_variant"]["moderate"]["drop_rate"] <= 1.0
            assert result["perfect_score"] < 0  # the smoke run's perfect-model episode
            assert out.with_suffix(".png").stat().st_size > 10_000
        elif script == "bench_model_levers.py":  # one model per lever, on the same data
            assert set(result["levers"]) == {"as_run", "probabilistic"}
            assert result["levers"]["probabilistic"]["probabilistic"] is True
            assert (run / "levers" / "probabilistic.model").exists()
            for lever in result["levers"].values():
                assert 0.0 <= lever["by_variant"]["moderate"]["drop_rate"] <= 1.0
            assert out.with_suffix(".png").stat().st_size > 10_000
        elif script == "bench_plan_fidelity.py":  # the simulator scored the model's samples
            (checked,) = result["models"].values()
            assert checked["planning_steps_checked"] >= 1
            assert -1.0 <= checked["spearman"] <= 1.0
            assert 0.0 <= checked["best_percentile"] <= 1.0
        elif script == "bench_drop_foresight.py":  # model 1 on iteration 1's MPC episodes
            from mbrl_ros.results.metrics_log import read_metrics

            mpc = [r for r in read_metrics(run / "metrics.csv")
                   if r["iteration"] == 1 and r["policy"] == "mpc"]
            overall = result["overall"]
            assert overall["episodes"] == len(mpc) >= 1
            assert overall["dropped"] == sum(r["drop"] for r in mpc)
            assert sum(b["episodes"] for b in result["by_goal"].values()) == len(mpc)
            for table in (overall["foresight"], overall["false_alarm"]):
                assert set(table) == {"1", "2"}
                assert all(v is None or 0.0 <= v <= 1.0 for v in table.values())
            assert out.with_suffix(".png").stat().st_size > 10_000
        elif script == "bench_closed_loop.py":
            assert set(result["by_variant"]) == {"pddm", "pddm_bf16", "gentle"}
            assert result["bf16_speedup_p50"] > 0
        else:
            scratch, warm = result["runs"]  # (a tiny smoke dataset: accepted or not)
            assert scratch["label"].startswith("from scratch") and warm["seconds"] > 0
            assert result["time_ratio"] > 0


@pytest.mark.timeout(300)
def test_learned_run_warm_starts_from_its_last_model(tmp_path):
    """``train.from_scratch: false`` in a budget: iteration 2 trains on from iteration 1's
    model (the log says which), and the planning model is a different object afterwards."""
    sys.path.insert(0, str(BENCH))
    from mbrl_ros.core.experiment import Budget

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="baoding", budget=Budget(6, 2, 1, 0), episode_length=10,
                   planner_overrides={"num_samples": 16},
                   trainer_overrides={"train.from_scratch": False, "train.epochs": 2})
    lines: list[str] = []
    PDDMRun(spec, tmp_path / "run", lines.append).run()
    trained = [line for line in lines if " model on " in line]
    assert len(trained) == 2, lines
    assert "from scratch" in trained[0] and "warm-started" in trained[1], trained
    assert spec.describe()["trainer_overrides"] == {"train.from_scratch": False,
                                                     "train.epochs": 2}


def _tiny_run(out: Path, budget: tuple[int, int, int, int], episode_length: int = 8,
              **fields):
    """Run a seconds-long learned Baoding run (16 samples, 2 epochs) into ``out``; its spec."""
    sys.path.insert(0, str(BENCH))
    from mbrl_ros.core.experiment import Budget

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="baoding", budget=Budget(*budget), episode_length=episode_length,
                   planner_overrides={"num_samples": 16},
                   trainer_overrides={"train.epochs": 2, "max_val_loss": 1e9}, **fields)
    PDDMRun(spec, out, lambda _: None).run()
    return spec


def test_late_trainer_settings_take_over_once_the_dataset_is_large_enough(tmp_path):
    """``late_trainer_from``: retrainings below the threshold use the run's own members,
    those at or above it the late overrides (wider members here), and the stored models
    say which they are."""
    sys.path.insert(0, str(BENCH))
    from mbrl_ros.core.experiment import Budget
    from mbrl_ros.core.models.serialization import load_model

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="baoding", budget=Budget(4, 3, 1, 0), episode_length=8,
                   planner_overrides={"num_samples": 16},
                   trainer_overrides={"train.epochs": 2, "max_val_loss": 1e9},
                   late_trainer_from=40,
                   late_trainer_overrides={"ensemble.hidden": [32, 32]})
    lines: list[str] = []
    run = PDDMRun(spec, tmp_path / "run", lines.append)
    assert run.settings_for(39) is run.train_settings
    assert run.settings_for(40) is run.late_train_settings
    assert run.late_train_settings.architecture.hidden_sizes == (32, 32)
    assert run.train_settings.architecture.hidden_sizes != (32, 32)
    run.run()
    trained = [line for line in lines if " model on " in line]
    assert len(trained) == 3, lines
    # 4 random episodes of <= 8 steps: at most 32 transitions when iteration 1 trains
    assert "late" not in trained[0] and "late trainer settings" in trained[-1], trained
    hidden = [load_model(tmp_path / "run" / "models" / f"iteration_{i:04d}.model")[0]
              .config.hidden_sizes for i in (1, 3)]
    assert hidden[0] != (32, 32) and hidden[1] == (32, 32)
    with pytest.raises(ValueError, match="late_trainer_from"):
        RunSpec(task="baoding", late_trainer_from=-1)


def test_a_fork_resumes_from_its_parents_data_under_its_own_settings(tmp_path):
    """fork_run: the fork holds the parent's episodes, rows and models before the fork
    iteration, takes the new planner settings, and finishes the budget from there (the
    parent's model of that iteration is reused, not retrained)."""
    parent = tmp_path / "parent"
    spec = _tiny_run(parent, (4, 3, 1, 0))
    from learning.fork_run import fork
    from learning.pddm_run import PDDMRun, RunSpec

    parent_rows = (parent / "metrics.csv").read_text().splitlines()
    note = fork(parent, tmp_path / "fork", 2, {"gamma": 5.0}, {"train.epochs": 3},
                spec_fields={"mpc_action_noise": 0.05})
    assert note["trainer_overrides"] == {"train.epochs": 3}
    before = [r for r in parent_rows[1:] if int(r.split(",")[1]) < 2]
    assert note["episodes"] == len(before) == 5  # 4 random episodes + iteration 1's MPC one
    assert len(list((tmp_path / "fork" / "dataset").glob("episode_*.npz"))) == 5
    with pytest.raises(ValueError, match="not empty"):
        fork(parent, tmp_path / "fork", 2, {})
    with pytest.raises(ValueError, match="end at iteration 3"):
        fork(parent, tmp_path / "other", 9, {})

    forked = RunSpec(task="baoding", budget=spec.budget, episode_length=8,
                     planner_overrides={"num_samples": 16, "gamma": 5.0},
                     trainer_overrides={**spec.trainer_overrides, "train.epochs": 3},
                     mpc_action_noise=0.05)
    lines: list[str] = []
    PDDMRun(forked, tmp_path / "fork", lines.append).run()
    rows = (tmp_path / "fork" / "metrics.csv").read_text().splitlines()
    assert rows[:6] == parent_rows[:6] and len(rows) == len(parent_rows)
    assert not [line for line in lines if "iteration 2 model on" in line], lines
    assert [line for line in lines if "iteration 3 model on" in line], lines
    with pytest.raises(ValueError, match="different run"):
        PDDMRun(spec, tmp_path / "fork", lines.append)


def test_a_fork_past_the_parents_end_goes_on_with_a_longer_budget(tmp_path):
    """fork_run at the iteration after the parent's last (e.g. a run stopped during that
    iteration's training, or one that finished its budget): the fork has no model of that
    iteration, trains it first, and runs the iterations its own budget adds."""
    parent = tmp_path / "parent"
    spec = _tiny_run(parent, (4, 3, 1, 0))
    from mbrl_ros.results.metrics_log import read_metrics

    from learning.fork_run import fork
    from learning.pddm_run import PDDMRun

    longer = replace(spec.budget, iterations=4)
    note = fork(parent, tmp_path / "fork", 4, {}, spec_fields={"budget": asdict(longer)})
    assert note["model_of_iteration"] == "trained by the fork"
    assert not (tmp_path / "fork" / "models" / "iteration_0004.model").exists()
    lines: list[str] = []
    PDDMRun(replace(spec, budget=longer), tmp_path / "fork", lines.append).run()
    assert [line for line in lines if "iteration 4 model on" in line], lines
    rows = read_metrics(tmp_path / "fork" / "metrics.csv")
    assert rows[-1]["iteration"] == 4
    assert len(rows) == len(read_metrics(parent / "metrics.csv")) + 1


def test_a_fork_under_other_states_replays_the_parents_episodes(tmp_path):
    """fork_run --env: the parent's episodes replayed under the new HandEnv options give the
    same motion (joints, balls' positions) with the new states (the tracker's velocities),
    no parent model comes along, and the fork trains its first model on the new states."""
    parent = tmp_path / "parent"
    spec = _tiny_run(parent, (3, 2, 1, 0))
    from mbrl_ros.core.data.dataset import EpisodeDataset

    from learning.fork_run import fork
    from learning.pddm_run import PDDMRun, RunSpec, run_env_options

    options = {"tracker_reports_velocity": True}
    note = fork(parent, tmp_path / "fork", 2, {}, env_options=options)
    assert note["replay"]["episodes_of_other_length"] == 0, note
    assert run_env_options(tmp_path / "fork") == options and run_env_options(parent) == {}
    assert not list((tmp_path / "fork" / "models").iterdir())
    old, new = EpisodeDataset(parent / "dataset"), EpisodeDataset(tmp_path / "fork" / "dataset")
    assert new.episode_ids == old.episode_ids[:4]
    moved = 0.0
    for e in new.episode_ids:
        a, b = old.episode(e), new.episode(e)
        np.testing.assert_array_equal(a.action, b.action)
        same = np.r_[0:27, 30:33]  # joints and both balls' positions (not their velocities)
        np.testing.assert_allclose(a.state[:, same], b.state[:, same], atol=1e-3)
        moved = max(moved, float(np.abs(a.state[:, 27:30] - b.state[:, 27:30]).max()))
    assert moved > 0  # the velocity fields are measured differently now

    lines: list[str] = []
    forked = RunSpec(task="baoding", budget=spec.budget, episode_length=8,
                     planner_overrides=spec.planner_overrides,
                     trainer_overrides=spec.trainer_overrides, env_options=options)
    PDDMRun(forked, tmp_path / "fork", lines.append).run()
    assert [line for line in lines if "iteration 2 model on" in line], lines


def test_a_run_collecting_with_another_goal_set_is_judged_on_the_tasks_own_goals(tmp_path):
    """evaluation_env_options keeps a run's state options and its other task settings but
    drops the collection-only ones (cube.goal_set, the only one the tasks declare so), so
    checkpoints of a curriculum run meet PDDM's four goals."""
    from mbrl_ros.core.tasks.from_values import collection_only_settings
    from mbrl_ros.sim.gym_env import HandEnv

    assert collection_only_settings() == {"cube.goal_set"}

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from learning.pddm_run import evaluation_env_options

    def stored(name, options):
        (tmp_path / name).mkdir()
        (tmp_path / name / "spec.json").write_text(json.dumps(
            {"task": "cube", "env_options": options}))
        return evaluation_env_options(tmp_path / name)

    halves = {"cube.goal_set": "pddm_with_halves"}
    assert stored("halves", {"task_params": halves}) == {}
    assert stored("both", {"tracker_reports_velocity": True,
                           "task_params": {**halves, "cube.drop_height": -0.06}}) == {
        "tracker_reports_velocity": True, "task_params": {"cube.drop_height": -0.06}}
    assert stored("plain", {}) == {}
    task = HandEnv("cube", **stored("judged", {"task_params": halves})).task
    assert [task.goal_name(s) for s in range(5000, 5008)] == ["left", "right", "up", "down"] * 2


def test_a_stored_runs_task_is_built_from_its_spec_as_its_env_built_it(tmp_path):
    """stored_run_task (benches reading a run's data without the scene): the spec's task,
    episode length and task parameters, the same task HandEnv made from that spec."""
    import torch

    from mbrl_ros.sim.gym_env import HandEnv

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))

    from learning.pddm_run import stored_run_task

    run = tmp_path / "run"
    run.mkdir()
    options = {"task_params": {"cube.goal": "down", "cube.drop_height": -0.06}}
    (run / "spec.json").write_text(json.dumps(
        {"task": "cube", "episode_length": 12, "env_options": options}))
    task = stored_run_task(run)
    made = HandEnv("cube", 12, **options).task
    assert (task.name, task.episode_length) == ("cube", 12) == (made.name, made.episode_length)
    assert task.goal_name(0) == made.goal_name(0) == "down"
    assert torch.equal(task.episode_goals(7), made.episode_goals(7))
    state = torch.zeros(1, task.state_dim)
    state[0, task.layout.slice("cube_pos")] = torch.tensor([0.0, 0.0, -0.08])
    _, dropped = task.reward(state, torch.zeros(1, task.action_dim), task.episode_goals(0)[:1])
    assert bool(dropped[0])  # -0.08 is below the spec's -0.06 (PDDM's -0.1 would keep it)
    assert stored_run_task(tmp_path).name == "baoding"  # no spec: the default run's task


def test_collection_noise_perturbs_only_the_mpc_episodes_actions(tmp_path):
    """RunSpec.mpc_action_noise: each executed MPC action gets Gaussian noise (the data
    records what was executed, within [-1, 1]); random episodes are untouched."""
    from mbrl_ros.core.data.dataset import EpisodeDataset

    data = {}
    for noise in (0.0, 0.3):
        _tiny_run(tmp_path / str(noise), (2, 1, 1, 0), 6, mpc_action_noise=noise)
        data[noise] = EpisodeDataset(tmp_path / str(noise) / "dataset")
    for e in data[0.0].episode_ids:
        quiet, noisy = data[0.0].episode(e), data[0.3].episode(e)
        assert np.all(np.abs(noisy.action) <= 1.0)
        if quiet.meta["policy"] == "random":
            np.testing.assert_array_equal(quiet.action, noisy.action)
        else:
            assert np.abs(quiet.action[0] - noisy.action[0]).mean() > 0.1
    from learning.pddm_run import RunSpec

    with pytest.raises(ValueError, match="mpc_action_noise"):
        RunSpec(task="baoding", mpc_action_noise=-0.1)


def _checkpoints_file(path: Path, run: str, episodes: int, rows: list[tuple]) -> None:
    """A bench_checkpoints result: rows of (iteration, transitions, drop, ratio)."""
    path.write_text(json.dumps({
        "run": run, "episodes": episodes, "variants": {"moderate": {"gamma": 10.0}},
        "checkpoints": [{"iteration": i, "transitions": n, "by_variant": {"moderate": {
            "episodes": episodes, "drop_rate": drop, "success_rate": 1 - drop, "steps": 90.0,
            "tracking_error": 0.01, "score_ratio_to_perfect": ratio}}}
            for i, n, drop, ratio in rows]}))


def test_checkpoint_summary_takes_the_newest_and_the_first_checkpoint_at_the_bar(tmp_path):
    sys.path.insert(0, str(BENCH))
    from learning.checkpoint_summary import checkpoint_summary

    run0 = "runs/bench_learning/b/baoding_mppi_learned_seed0"
    _checkpoints_file(tmp_path / "checkpoints_b_seed0.json", run0, 8,
                      [(10, 20_000, 0.5, 0.4), (20, 40_000, 0.1, 0.85), (30, 60_000, 0.3, 0.9)])
    # the same checkpoint with more episodes wins over the 8-episode one
    _checkpoints_file(tmp_path / "checkpoints_newest_b_seed0.json", run0, 16,
                      [(30, 60_000, 0.1, 0.7)])
    _checkpoints_file(tmp_path / "checkpoints_b_seed1.json",
                      "runs/bench_learning/b/baoding_mppi_learned_seed1", 8,
                      [(10, 20_000, 0.5, 0.4)])
    _checkpoints_file(tmp_path / "checkpoints_other.json",
                      "runs/bench_learning/other/baoding_mppi_learned_seed0", 8,
                      [(10, 20_000, 0.0, 1.0)])
    moderate = checkpoint_summary(tmp_path, "b", "baoding")["variants"]["moderate"]
    seed0 = moderate["newest"]["baoding_mppi_learned_seed0"]
    assert (seed0["iteration"], seed0["episodes"], seed0["drop_rate"]) == (30, 16, 0.1)
    assert moderate["transitions_to_criterion"] == {"baoding_mppi_learned_seed0": 40_000,
                                                    "baoding_mppi_learned_seed1": None}
    assert moderate["mean_newest"]["drop_rate"] == pytest.approx(0.3)
    assert checkpoint_summary(tmp_path, "b", "cube") is None
    # a task with named goals keeps its newest checkpoint's figures per goal
    cube = tmp_path / "checkpoints_b_cube_seed0.json"
    _checkpoints_file(cube, "runs/bench_learning/b/cube_mppi_learned_seed0", 16,
                      [(30, 60_000, 0.25, 0.3)])
    data = json.loads(cube.read_text())
    data["checkpoints"][0]["by_variant"]["moderate"]["by_goal"] = {"up": {"drop_rate": 0.5}}
    cube.write_text(json.dumps(data))
    cube_seed0 = checkpoint_summary(tmp_path, "b", "cube")["variants"]["moderate"]["newest"]
    assert cube_seed0["cube_mppi_learned_seed0"]["by_goal"] == {"up": {"drop_rate": 0.5}}
    # another precision is a variant of its own, not a second measurement of "moderate"
    fp32 = tmp_path / "checkpoints_fp32_b_seed0.json"
    _checkpoints_file(fp32, run0, 32, [(30, 60_000, 0.5, 0.5)])
    fp32.write_text(json.dumps({**json.loads(fp32.read_text()), "inference_dtype": "float32"}))
    variants = checkpoint_summary(tmp_path, "b", "baoding")["variants"]
    assert variants["moderate"]["newest"]["baoding_mppi_learned_seed0"]["drop_rate"] == 0.1
    assert variants["moderate_float32"]["newest"]["baoding_mppi_learned_seed0"]["episodes"] == 32


def test_a_run_stopped_part_way_leaves_its_last_iteration_out():
    sys.path.insert(0, str(BENCH))
    from learning import curves

    def row(iteration: int, policy: str, transitions: int, drop: bool) -> dict:
        return {"iteration": iteration, "policy": policy, "transitions": transitions,
                "return": -1.0, "score": -0.1, "tracking_error": 0.01, "drop": drop,
                "success": not drop, "steps": 100}

    rows = [row(0, "random", 100, True)]
    rows += [row(1, "mpc", 200 + k, True) for k in range(4)] + [row(1, "random", 300, True)]
    rows += [row(2, "mpc", 400, False)]  # stopped after one of its four episodes
    points = curves.run_points(rows)
    assert [p["iteration"] for p in points] == [0.0, 1.0]
    assert points[1]["drop"] == 1.0
    rows += [row(2, "mpc", 401 + k, False) for k in range(3)]
    assert [p["iteration"] for p in curves.run_points(rows)] == [0.0, 1.0, 2.0]


def _one_iteration_run(runs: Path, score: float) -> None:
    """A learned Baoding run of two random episodes that drop and one iteration of two MPC
    episodes that keep the balls and score ``score``."""
    from mbrl_ros.results import METRIC_COLUMNS, MetricsLog

    rows = []
    for episode, (iteration, policy) in enumerate([(0, "random")] * 2 + [(1, "mpc")] * 2, 1):
        row = dict.fromkeys(METRIC_COLUMNS, 0)
        kept = policy == "mpc"
        row.update(episode=episode, iteration=iteration, policy=policy, steps=100,
                   transitions=100 * episode, score=score if kept else 10 * score,
                   drop=not kept, success=kept, tracking_error=0.01, **{"return": -10.0})
        rows.append(row)
    MetricsLog(runs / "baoding_mppi_learned_seed0" / "metrics.csv").extend(rows)


def _collect(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_learning.py"), "--collect-only", "--tasks",
         "baoding", "--planners", "mppi", "--seeds", "0", *args],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_result_of_its_own_is_judged_by_the_recorded_bound_and_has_its_own_picture(tmp_path):
    recorded = json.loads((BENCH / "results" / "learning.json").read_text())
    bound = recorded["summary"]["baoding"]["perfect_model"]
    _one_iteration_run(tmp_path / "runs", 2 * bound["score"])
    out = tmp_path / "results" / "learning_other.json"
    _collect("--runs", str(tmp_path / "runs"), "--out", str(out))
    summary = json.loads(out.read_text())["summary"]["baoding"]
    assert summary["perfect_model"]["score"] == bound["score"]
    assert summary["learned_mppi"]["score_ratio_to_perfect"] == pytest.approx(0.5, rel=1e-4)
    assert (tmp_path / "results" / "learning_other_baoding.png").stat().st_size > 10_000
    assert not (tmp_path / "results" / "learning_baoding.png").exists()


def test_a_task_without_sac_runs_takes_sacs_curve_from_the_stored_csvs(tmp_path):
    """--collect-only with no SAC runs builds tasks.<task>.sac from the evaluation CSVs that
    sac_summary.py keeps in the repository (one producer), and from nothing else."""
    stored = BENCH / "results" / "sac" / "baoding_seed1.csv"
    store = tmp_path / "sac"
    store.mkdir()
    (store / "baoding_seed7.csv").write_text(stored.read_text())
    rows = stored.read_text().splitlines()[1:]
    out = tmp_path / "results" / "learning_stored.json"
    _collect("--runs", str(tmp_path / "absent"), "--out", str(out), "--sac-store", str(store))
    sac = json.loads(out.read_text())["tasks"]["baoding"]["sac"]
    assert sac["seeds"] == [1.0] * len(rows)
    assert sac["transitions"] == [float(r.split(",")[0]) for r in rows]
    _collect("--runs", str(tmp_path / "absent"), "--out", str(out),
             "--sac-store", str(tmp_path / "empty"))
    assert json.loads(out.read_text())["tasks"]["baoding"]["sac"] is None


def test_keep_own_adds_a_compared_run_and_leaves_the_recorded_blocks_as_they_were(tmp_path):
    recorded = json.loads((BENCH / "results" / "learning.json").read_text())
    out = tmp_path / "learning.json"
    out.write_text(json.dumps(recorded))
    bound = recorded["summary"]["baoding"]["perfect_model"]
    _one_iteration_run(tmp_path / "other", 1.25 * bound["score"])
    timing = tmp_path / "other" / "baoding_mppi_learned_seed0" / "timing.json"
    timing.write_text(json.dumps({"active_s": 36.0, "transitions": 400}))
    _collect("--runs", str(tmp_path / "absent"), "--out", str(out), "--keep-own",
             "--compare", f"other={tmp_path / 'other'}", "--throughput-from", "other")
    written = json.loads(out.read_text())
    baoding = written["summary"]["baoding"]
    for name, block in recorded["summary"]["baoding"].items():
        assert baoding[name] == block, name
    assert written["date"] == recorded["date"]
    other = baoding["learned_mppi_other"]
    assert other["runs"] == str(tmp_path / "other") and other["measured"]
    assert other["score_ratio_to_perfect"] == pytest.approx(0.8, rel=1e-4)
    assert other["transitions_to_criterion"] == 400
    assert other["throughput"]["transitions_per_hour"] == pytest.approx(40_000.0)
    assert other["throughput"]["machine"]
    # the loop the bar is judged on gives the summary's throughput; the old one is kept
    assert written["summary"]["throughput"]["transitions_per_hour"] == pytest.approx(40_000.0)
    assert written["summary"]["throughput"]["runs"] == str(tmp_path / "other")
    before = {k: v for k, v in recorded["summary"]["throughput"].items() if k != "replaced"}
    assert written["summary"]["throughput"]["replaced"] == before
    _collect("--runs", str(tmp_path / "absent"), "--out", str(out), "--keep-own",
             "--compare", f"other={tmp_path / 'other'}", "--throughput-from", "other",
             "--bar-from", "other", "--bar-variant", "moderate_wide_beta05")
    again = json.loads(out.read_text())["summary"]
    assert again["throughput"]["replaced"] == before
    assert again["baoding"]["learned_mppi_bar"]["from"] == {"other": {}}


def test_bar_block_takes_each_seeds_first_crossing_over_the_named_runs():
    sys.path.insert(0, str(BENCH))
    from bench_learning import bar_block

    def block(reached: dict) -> dict:
        return {"checkpoints": {"variants": {"v": {"transitions_to_criterion": reached}}}}

    summary = {"learned_mppi_a": block({"baoding_mppi_learned_seed0": 84_000,
                                        "baoding_mppi_learned_seed2": None}),
               "learned_mppi_b": block({"baoding_mppi_learned_seed2": 96_000,
                                        "baoding_mppi_learned_seed0": 90_000})}
    bar = bar_block(summary, ["a", "b"], "v")
    assert bar["transitions_to_criterion"] == {"seed0": 84_000, "seed2": 96_000}
    assert (bar["seeds"], bar["seeds_reached"], bar["all_seeds_by"]) == (2, 2, 96_000)
    summary["learned_mppi_c"] = block({"baoding_mppi_learned_seed1": None})
    bar = bar_block(summary, ["a", "b", "c", "absent"], "v")
    assert (bar["seeds"], bar["seeds_reached"], bar["all_seeds_by"]) == (3, 2, None)
    assert bar["from"]["absent"] == {}
    assert bar_block(summary, ["a"], "other")["all_seeds_by"] is None


def test_the_headline_is_the_loop_judged_as_the_bar_and_the_collecting_curve_is_kept(
        tmp_path, monkeypatch):
    """--headline-only: summary.<task>.learned_mppi becomes, per seed, the first saved model
    at the bar over the named runs (read from the recorded checkpoint files), the collecting
    planner's own block moves to learned_mppi_collecting, and a second restatement keeps
    both; a task without a bar block is left as it was."""
    sys.path.insert(0, str(BENCH))
    import bench_learning

    import benchlib
    from learning.checkpoint_summary import checkpoint_summary

    _checkpoints_file(tmp_path / "checkpoints_a_seed0.json",
                      "runs/bench_learning/a/baoding_mppi_learned_seed0", 16,
                      [(40, 70_000, 0.3, 0.9), (41, 74_000, 0.125, 0.82), (42, 78_000, 0.0, 0.9)])
    _checkpoints_file(tmp_path / "checkpoints_b_seed1.json",
                      "runs/bench_learning/b/baoding_mppi_learned_seed1", 16,
                      [(50, 90_000, 0.0, 0.86)])
    collecting = {"seeds": 3, "transitions": 116_813.0, "transitions_to_criterion": None}
    summary = {"learned_mppi": collecting}
    for name in ("a", "b"):
        summary[f"learned_mppi_{name}"] = {
            "runs": f"runs/bench_learning/{name}",
            "checkpoints": checkpoint_summary(tmp_path, name, "baoding")}
    # a name without a recorded block, as --bar-from allows, is passed over
    summary["learned_mppi_bar"] = bench_learning.bar_block(summary, ["a", "b", "absent"],
                                                           "moderate")
    out = tmp_path / "learning.json"
    out.write_text(json.dumps({"summary": {"baoding": summary,
                                           "cube": {"learned_mppi": collecting},
                                           "throughput": {}}, "tasks": {}}))
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path)  # where the checkpoint files are
    measured = []
    for _ in range(2):
        assert bench_learning.main(["--headline-only", "--out", str(out)]) == 0
        result = json.loads(out.read_text())["summary"]
        head = result["baoding"]["learned_mppi"]
        measured.append(head["measured"])
        assert head["transitions_to_criterion"] == head["transitions"] == 90_000
        assert head["per_seed"]["seed0"]["iteration"] == 41  # 70,000 dropped 30%
        assert head["per_seed"]["seed1"]["budget"] == "b"
        assert head["drop_rate"] == pytest.approx(0.0625)
        assert head["score_ratio_to_perfect"] == pytest.approx(0.84)
        assert result["baoding"]["learned_mppi_collecting"] == collecting
        assert result["cube"] == {"learned_mppi": collecting}
    assert measured[0] == measured[1]  # restated unchanged: left as recorded


def test_plan_ranking_scores_a_perfect_a_reversed_and_a_blind_model():
    sys.path.insert(0, str(BENCH))
    import torch
    from bench_plan_fidelity import ranking

    true = torch.linspace(-3.0, 0.0, 50)
    perfect = ranking(true.clone(), true, gamma=10.0)
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["best_percentile"] == pytest.approx(49 / 50)
    assert perfect["weighting_efficiency"] == pytest.approx(1.0)
    reversed_ = ranking(-true, true, gamma=10.0)
    assert reversed_["spearman"] == pytest.approx(-1.0)
    assert reversed_["best_percentile"] == 0.0 and reversed_["weighting_efficiency"] < 0
    # a drop the model cannot see: the simulator's -inf candidates rank last, not as NaN
    true[:5] = -torch.inf
    blind = ranking(torch.zeros(50), true, gamma=10.0)
    assert blind["weighting_efficiency"] == pytest.approx(0.0, abs=1e-9)


def test_checkpoint_figures_per_goal_split_the_episodes_by_their_goal():
    sys.path.insert(0, str(BENCH))
    from bench_checkpoints import by_goal

    def ep(drop: bool, error: float) -> dict:
        return {"drop": drop, "success": not drop and error < 0.2, "steps": 40 if drop else 70,
                "tracking_error": error, "score": -error}

    eps = [ep(False, 0.1), ep(True, 0.9), ep(False, 0.3), ep(True, 0.7)]
    split = by_goal(eps, ["left", "up", "left", "up"])
    assert list(split) == ["left", "up"]
    assert split["left"]["drop_rate"] == 0.0 and split["up"]["drop_rate"] == 1.0
    assert split["left"]["success_rate"] == 0.5 and split["up"]["episodes"] == 2
    assert split["left"]["tracking_error"] == pytest.approx(0.2)
    with pytest.raises(ValueError):  # one goal name per episode
        by_goal(eps, ["left"])


def test_catch_data_adds_copies_of_the_extra_episodes_to_the_runs_snapshot(tmp_path):
    """bench_catch_data: the dataset of ``c`` copies is the run's episodes before the
    snapshot iteration plus ``c`` times the extra ones; the goal seeds pick only that goal."""
    parent = tmp_path / "parent"
    _tiny_run(parent, (4, 3, 1, 0))
    from bench_catch_data import dataset_with_copies, goal_seeds

    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.tasks.cube import CubeTask

    seeds = goal_seeds(CubeTask(), "down", 3)
    assert len(seeds) == 3 and {CubeTask().goal_name(s) for s in seeds} == {"down"}
    extra = EpisodeDataset(tmp_path / "extra")
    source = EpisodeDataset(parent / "dataset")
    for e in source.episode_ids[:2]:
        ep = source.episode(e)
        extra.append_episode(state=ep.state, action=ep.action, next_state=ep.next_state,
                             reward=ep.reward, time=ep.time, done=ep.done, meta=ep.meta)
    snapshot = dataset_with_copies(parent, 2, extra, 0, tmp_path / "c0").dataset
    assert len(snapshot.episode_ids) == 5  # 4 random + iteration 1's MPC episode
    doubled = dataset_with_copies(parent, 2, extra, 2, tmp_path / "c2").dataset
    assert len(doubled.episode_ids) == 5 + 2 * 2
    assert doubled.num_transitions == snapshot.num_transitions + 2 * extra.num_transitions


def test_catch_data_open_loop_error_is_zero_on_the_models_own_predictions(tmp_path):
    """open_loop_error: episodes whose last states are the mean of the members' own
    predictions from their first state have no error; shifting the true cube height by 1 cm shows
    as 1 cm of height error and none about x."""
    import torch

    sys.path.insert(0, str(BENCH))
    from bench_catch_data import open_loop_error

    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.experiment import Budget
    from mbrl_ros.core.models.serialization import load_model

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="cube", budget=Budget(3, 1, 1, 0), episode_length=12,
                   planner_overrides={"num_samples": 16},
                   trainer_overrides={"train.epochs": 2, "max_val_loss": 1e9})
    run = PDDMRun(spec, tmp_path / "run", lambda _: None)
    run.run()
    path = tmp_path / "run" / "models" / "iteration_0001.model"
    model, _ = load_model(path)
    ep = run.dataset.episode(run.dataset.episode_ids[0])
    z, steps = run.task.layout.start("cube_pos") + 2, 3
    windows = []  # 3-step pieces of the episode whose last state is the models' prediction
    for start in range(4):
        actions = ep.action[start:start + steps]
        with torch.no_grad():
            state = torch.as_tensor(ep.state[start:start + 1], dtype=torch.float32)
            for a in torch.as_tensor(actions, dtype=torch.float32):
                state = model.predict(state, a[None])  # each member on its own
        nxt = ep.next_state[start:start + steps].copy()
        nxt[-1] = state.mean(0)[0].numpy()
        windows.append((ep.state[start:start + steps], actions, nxt))
    for shift, expected in ((0.0, 0.0), (0.01, 0.01)):
        own = EpisodeDataset(tmp_path / f"own{shift}")
        for states, actions, nxt in windows:
            shifted = nxt.copy()
            shifted[-1, z] += shift
            own.append_episode(state=states, action=actions, next_state=shifted,
                               reward=np.zeros(steps), time=np.arange(steps) * 0.1)
        fit = open_loop_error(path, own, run.task, steps=steps)
        assert fit["z_mean"] == pytest.approx(expected, abs=2e-4), fit
        assert fit["rx_mean"] == pytest.approx(0.0, abs=2e-4), fit


def test_catch_data_handover_replays_the_recorded_actions_before_it_hands_over(tmp_path):
    """handover: replaying all of an episode's recorded actions reproduces its tracking
    error (the simulator is deterministic from the seed); holding still from the start
    does something else."""
    import torch

    sys.path.insert(0, str(BENCH))
    from bench_catch_data import handover

    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.experiment import Budget
    from mbrl_ros.sim.gym_env import HandEnv

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="cube", budget=Budget(1, 0, 0, 0), episode_length=12)
    run = PDDMRun(spec, tmp_path / "run", lambda _: None)
    run.run()
    ep = run.dataset.episode(run.dataset.episode_ids[0])
    env = HandEnv("cube", episode_length=12)
    states = np.vstack([ep.state, ep.next_state[-1:]])
    goals = torch.as_tensor(env.task.episode_goals(int(ep.meta["seed"]), len(ep) + 1))
    recorded = env.task.episode_metrics(torch.as_tensor(states), torch.as_tensor(ep.action),
                                        goals.double())["tracking_error"]
    extra = EpisodeDataset(tmp_path / "extra")
    extra.append_episode(state=ep.state, action=ep.action, next_state=ep.next_state,
                         reward=ep.reward, time=ep.time, done=ep.done, meta=ep.meta)
    replayed = handover(env, None, extra, len(ep), {})
    assert replayed["episodes"] == 1
    assert replayed["tracking_error"] == pytest.approx(recorded, rel=1e-6)
    still = handover(env, None, extra, 0, {})
    assert still["tracking_error"] != pytest.approx(recorded, rel=1e-3)


def test_model_levers_take_a_runs_late_trainer_and_task_changes(tmp_path):
    """A lever on a cube run's snapshot trains as the run did at that size (its late
    trainer from ``late_trainer_from`` on) and hands ``task.`` changes to the task."""
    sys.path.insert(0, str(BENCH))
    from bench_model_levers import LEVERS, run_trainer_overrides, split_lever

    (tmp_path / "spec.json").write_text(json.dumps({
        "task": "cube", "trainer_overrides": {"train.epochs": 40},
        "late_trainer_from": 1000, "late_trainer_overrides": {"train.epochs": 80}}))
    assert run_trainer_overrides(tmp_path, 999) == {"train.epochs": 40}
    assert run_trainer_overrides(tmp_path, 1000) == {"train.epochs": 80}
    assert run_trainer_overrides(tmp_path) == {"train.epochs": 40}
    task, trainer = split_lever(LEVERS["cube_symmetry_3_seed_1"])
    assert task == {"symmetry_copies": 3} and trainer == {"train.seed": 1}


def test_drop_hazard_labels_the_last_k_states_of_dropped_episodes_only(tmp_path):
    """learning.drop_hazard: a dropped episode's last k + 1 reached states are labelled 1, a
    kept episode's none; the fitted hazard separates states it was shown, ignores the goal
    fields, and the planning task's reward is the task's minus weight x hazard."""
    sys.path.insert(0, str(BENCH))
    import torch

    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.tasks import make_task

    from learning.drop_hazard import labelled_states, train_hazard, with_hazard_cost

    task = make_task("cube")
    rng = np.random.default_rng(0)
    data = EpisodeDataset(tmp_path / "data")
    for length, dropped in ((6, True), (5, False), (4, True)):
        state = rng.normal(size=(length + 1, task.state_dim)).astype(np.float32)
        state[:, 0] = 5.0 * dropped  # what tells drops apart in this toy data
        done = np.zeros(length, dtype=bool)
        done[-1] = dropped
        data.append_episode(state=state[:-1], action=np.zeros((length, task.action_dim)),
                            next_state=state[1:], reward=np.zeros(length),
                            time=np.arange(length) * 0.1, done=done, step=np.arange(length))
    states, labels = labelled_states(data, data.episode_ids, k=2)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] + [0] * 5 + [0, 1, 1, 1]
    hazard = train_hazard(task, states, labels, epochs=200)
    with torch.no_grad():
        p = hazard(states)
        moved_goal = states.clone()
        moved_goal[:, task.goal_slice] += 3.0
        assert torch.allclose(hazard(moved_goal), p)
    assert float(p[labels == 1].min()) > 0.5 > float(p[11]) and float(p[6:11].max()) < 0.5
    planning = with_hazard_cost(task, hazard, weight=7.0)
    actions = torch.zeros(len(states), task.action_dim)
    goals = torch.zeros(len(states), task.goal_dim)
    base, _ = task.reward(states, actions, goals)
    scored, _ = planning.reward(states, actions, goals)
    assert torch.allclose(base - scored, 7.0 * p, atol=2e-3)


@pytest.mark.timeout(400)
def test_a_run_with_a_drop_hazard_fits_one_per_model_and_plans_with_it(tmp_path):
    """RunSpec.drop_hazard: each iteration's hazard is fitted and stored beside its model,
    the planner scores the hazard-penalized task, and a resumed run loads the stored one."""
    sys.path.insert(0, str(BENCH))
    import torch

    from mbrl_ros.core.experiment import Budget

    from learning.pddm_run import PDDMRun, RunSpec

    spec = RunSpec(task="baoding", budget=Budget(3, 2, 1, 0), episode_length=6,
                   planner_overrides={"num_samples": 16},
                   trainer_overrides={"train.epochs": 2, "max_val_loss": 1e9},
                   drop_hazard={"k": 2, "weight": 5.0, "epochs": 1})
    lines: list[str] = []
    run = PDDMRun(spec, tmp_path / "run", lines.append)
    run.run()
    assert sorted(p.name for p in (tmp_path / "run" / "models").glob("hazard_*.pt")) == [
        "hazard_0001.pt", "hazard_0002.pt"]
    assert sum("drop hazard" in line for line in lines) == 2
    assert run.mpc is not None and run.mpc.task is run.planning_task is not run.task
    assert run.mpc.planner.task is run.planning_task
    resumed = PDDMRun(spec, tmp_path / "run", lines.append)
    resumed._model_for(2)
    assert sum("drop hazard" in line for line in lines) == 2  # loaded, not refitted
    stored = torch.load(tmp_path / "run" / "models" / "hazard_0002.pt")
    assert all(torch.equal(v, resumed.hazard.state_dict()[k]) for k, v in stored.items())
    # bench_checkpoints judges each model with the hazard the run planned with
    from bench_checkpoints import planning_task

    judged = planning_task(tmp_path / "run", 2, run.task)
    states = torch.randn(5, run.task.state_dim)
    actions, goals = torch.zeros(5, run.task.action_dim), torch.zeros(5, run.task.goal_dim)
    with torch.no_grad():
        expected = run.task.reward(states, actions, goals)[0] - 5.0 * resumed.hazard(states)
    assert torch.allclose(judged.reward(states, actions, goals)[0], expected, atol=1e-4)
    assert planning_task(tmp_path / "plain", 2, run.task) is None
    # bench_drop_hazard on that run: the control (weight 0) beside a hazard weight
    from bench_drop_hazard import main as drop_hazard_main

    out = tmp_path / "drop_hazard.json"
    assert drop_hazard_main(["--run", str(tmp_path / "run"), "--iteration", "2", "--k", "2",
                             "--epochs", "1", "--held-out", "1", "--weights", "0,5",
                             "--episodes", "1", "--out", str(out)]) == 0
    probe = json.loads(out.read_text())
    assert list(probe["by_weight"]) == ["0.0", "5.0"] and probe["k"] == 2
    from bench_checkpoints import transitions_before

    assert probe["train_states"] == transitions_before(tmp_path / "run", 2) > 0
    assert all(block["moderate"]["episodes"] == 1 for block in probe["by_weight"].values())
    with pytest.raises(ValueError, match="drop_hazard"):
        RunSpec(task="cube", drop_hazard={"horizon": 3})


@pytest.mark.timeout(300)
def test_cube_turns_records_each_goals_height_and_error_per_step(tmp_path):
    """bench_cube_turns on the simulator (a tiny planner, 3 steps): one episode per goal,
    the cube's height and error for every state, starting at the goal's whole turn."""
    out = tmp_path / "cube_turns.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_cube_turns.py"), "--goals",
                           "down,half_up", "--episode-length", "3", "--num-samples", "8",
                           "--jobs", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    down, half_up = result["episodes"]
    assert (down["goal"], half_up["goal"]) == ("down", "half_up")
    for ep, turn in ((down, 1.5), (half_up, 0.7)):
        assert ep["planned_on"] == "simulator" and ep["steps"] == 3
        assert len(ep["z"]) == len(ep["error"]) == 4
        assert ep["error"][0] == pytest.approx(turn, abs=1e-3)  # the cube starts unturned
        assert ep["z"][0] == pytest.approx(0.0, abs=2e-3)  # at its start position
        assert ep["lowest_z"] == pytest.approx(min(ep["z"])) and not ep["dropped"]
    assert out.with_suffix(".png").stat().st_size > 10_000
