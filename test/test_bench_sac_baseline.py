"""Smoke test of the SAC baseline runner: a tiny run, then a resumed one (no rows lost or
repeated, rows written after the last checkpoint dropped)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "learning" / "sac_baseline.py"


def _run(out: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _rows(out: Path) -> list[dict[str, float]]:
    with (out / "sac_eval.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_sac_runs_evaluates_and_resumes(tmp_path):
    out = tmp_path / "sac_baoding_s0"
    text = _run(out)
    assert "300/300 transitions" in text
    rows = _rows(out)
    assert [r["transitions"] for r in rows] == [0, 150, 300]
    for r in rows:
        for key in ("score", "return", "steps_kept", "drop_rate", "tracking_error", "wall_s"):
            assert math.isfinite(r[key]), (key, r)
        assert r["score"] < 0 and r["tracking_error"] > 0
        assert 1 <= r["steps_kept"] <= 100 and 0 <= r["drop_rate"] <= 1
        assert r["eval_episodes"] == 1
    assert all(r["train_tps"] > 0 for r in rows[1:])
    assert rows[0]["wall_s"] < rows[1]["wall_s"] < rows[2]["wall_s"]
    assert rows[-1]["train_episodes"] > 0
    state = json.loads((out / "state.json").read_text())
    assert state["progress"]["transitions"] == 300 and state["progress"]["rows"] == 3
    assert "machine" in state and state["config"]["task"] == "baoding"

    # a crash after a row was written but before its checkpoint: the row must not survive
    with (out / "sac_eval.csv").open("a") as f:
        f.write(",".join(["450"] + ["0"] * 14) + "\n")
    text = _run(out, "--transitions", "450")
    assert "1 unsaved row(s) dropped" in text and "450/450 transitions" in text
    rows = _rows(out)
    assert [r["transitions"] for r in rows] == [0, 150, 300, 450]
    assert rows[3]["wall_s"] > rows[2]["wall_s"] and math.isfinite(rows[3]["score"])
    assert sorted(p.name for p in out.glob("*_*.*")) == [
        "buffer_0000000450.npz", "sac_0000000450.zip", "sac_eval.csv"]


def test_a_checkpoint_is_evaluated_on_draws_of_its_stochastic_policy(tmp_path):
    """--evaluate-stochastic: the newest checkpoint's own policy draws make distinct Baoding
    episodes (the mean action plays one), reproducibly, kept per checkpoint in a json."""
    out = tmp_path / "sac_baoding_s0"
    _run(out)

    def evaluations(episodes: int) -> dict:
        proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out),
                               "--evaluate-stochastic", str(episodes)], capture_output=True,
                              text=True, timeout=120, cwd=out.parent)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads((out / "sac_eval_stochastic.json").read_text())["evaluations"]

    first = evaluations(3)
    assert list(first) == ["300"]
    drawn, mean = first["300"]["stochastic"], first["300"]["mean_action"]
    assert drawn["eval_episodes"] == 3 and mean["eval_episodes"] == 1
    returns = first["300"]["episode_returns"]
    assert len(set(returns)) == 3  # three different episodes, not one played three times
    # a rerun (of fewer episodes) draws the same actions for the same episodes
    assert evaluations(2)["300"]["episode_returns"] == returns[:2]


def test_each_stochastic_episode_draws_from_its_own_seed(tmp_path):
    """episode_rows seeds torch per episode: two evaluations in one process, with other
    draws between them, play the same episodes (without the seeding, the second would
    continue the first's random stream)."""
    out = tmp_path / "sac_baoding_s0"
    _run(out)
    sys.path.insert(0, str(SCRIPT.parents[1]))
    import torch

    from mbrl_ros.sim.gym_env import HandEnv

    from learning.sac_baseline import SAC, STATE_NAME, episode_rows

    state = json.loads((out / STATE_NAME).read_text())
    model = SAC.load(out / state["progress"]["model"], device="cpu")
    env = HandEnv("baoding")
    first = [r["return"] for r in episode_rows(model, env, 2, deterministic=False)]
    torch.rand(1000)
    again = [r["return"] for r in episode_rows(model, env, 2, deterministic=False)]
    assert again == first and first[0] != first[1]


def test_training_evaluations_draw_from_the_policy_unless_the_mean_is_asked(tmp_path):
    """The default evaluation draws each episode's actions from the policy (Baoding's
    episodes differ only by those draws); "mean" plays one episode however many are asked,
    and a run keeps its choice on resume."""
    sampled, mean = tmp_path / "sampled", tmp_path / "mean"
    _run(sampled, "--eval-episodes", "3")
    _run(mean, "--eval-episodes", "3", "--eval-policy", "mean")
    assert all(r["return_std"] > 0 for r in _rows(sampled))
    assert all(r["return_std"] == 0 for r in _rows(mean))
    assert json.loads((sampled / "state.json").read_text())["config"]["eval_policy"] == "sampled"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(mean),
                           "--eval-episodes", "3", "--transitions", "450"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "eval_policy" in proc.stderr


def test_sac_summary_keeps_the_curve_in_the_results_and_finds_the_bar(tmp_path):
    """sac_summary.py copies a run's CSV beside the results, judges each seed by the
    perfect-model bound (first evaluation at >= 80% of its score with <= 20% drops) and
    writes summary.<task>.sac, the curve and a picture from the copies alone."""
    sys.path.insert(0, str(SCRIPT.parents[1]))
    from learning import sac_summary

    perfect = -0.015
    rows = [{"transitions": t, "score": sc, "drop_rate": d, "success_rate": 1 - d,
             "tracking_error": 0.01, "eval_episodes": 10, "train_tps": 80.0}
            for t, sc, d in ((0, -0.12, 1.0), (25000, -0.0180, 0.3), (50000, -0.0185, 0.1),
                             (75000, -0.0170, 0.2))]
    block = sac_summary.seed_block(rows, perfect)
    # 25000: ratio 0.83 but 30% drops; 50000: ratio 0.81, 10% drops -> the first to meet it
    assert block["transitions_to_criterion"] == 50000
    assert block["best"]["transitions"] == 75000 and block["transitions"] == 75000
    assert sac_summary.seed_block(rows[:2], perfect)["transitions_to_criterion"] is None

    out = tmp_path / "runs" / "sac_baoding_s3"
    out.parent.mkdir()
    _run(out, "--seed", "3")
    learning = tmp_path / "results" / "learning.json"
    learning.parent.mkdir()
    learning.write_text(json.dumps({
        "summary": {"baoding": {"perfect_model": {"score": perfect}, "learned_mppi_bar": {
            "transitions_to_criterion": {"seed0": 84223}}}},
        "tasks": {"baoding": {}}}))
    store = tmp_path / "results" / "sac"
    assert sac_summary.main(["--store", str(out), "--store-dir", str(store),
                             "--learning-json", str(learning)]) == 0
    assert (store / "baoding_seed3.csv").read_text() == (out / "sac_eval.csv").read_text()
    result = json.loads(learning.read_text())
    sac = result["summary"]["baoding"]["sac"]
    assert sac["seeds"] == 1 and sac["transitions"] == 300
    assert sac["transitions_to_criterion"] == {"seed3": None}
    assert sac["learned_mppi_transitions_to_criterion"] == {"seed0": 84223}
    assert result["tasks"]["baoding"]["sac"]["transitions"] == [0.0, 150.0, 300.0]
    assert (learning.parent / "sac_baoding.png").stat().st_size > 10_000
    # the copies alone rebuild it
    (out / "sac_eval.csv").unlink()
    assert sac_summary.main(["--store-dir", str(store), "--learning-json", str(learning)]) == 0
