"""The perfect-model upper bound of the learning benchmark: the simulator as a planner model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import mbrl_ros.sim as sim
from mbrl_ros.core.planners import make_planner
from mbrl_ros.core.tasks import make_task

from learning.true_model import SimulatorModel


def _warm_sim(scene: str) -> tuple[sim.HandSim, np.ndarray]:
    hand = sim.HandSim(scene)
    obs = hand.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(4):
        obs = hand.step(rng.uniform(-0.3, 0.3, 24)).observation
    return hand, obs.task_obs


@pytest.mark.parametrize("scene", ["baoding", "cube"])
def test_predictions_follow_the_simulator_step_by_step(scene):
    hand, x0 = _warm_sim(scene)
    model = SimulatorModel(hand)
    model.anchor(hand.get_state(), x0)
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 24))
    batch = torch.as_tensor(np.stack([actions[0], -actions[0]]), dtype=torch.float32)
    current = model.predict(torch.as_tensor(x0, dtype=torch.float32).expand(2, -1), batch)
    first = current[0, 0].clone()
    for k in range(1, 3):
        step = torch.as_tensor(np.stack([actions[k], actions[k]]), dtype=torch.float32)
        current = model.predict(current, step)
    true = [hand.step(a).observation.task_obs for a in actions]
    assert np.abs(first.numpy() - true[0]).max() < 1e-4
    assert np.abs(current[0, 0].numpy() - true[2]).max() < 1e-4
    # The second candidate took another first action: it must have ended elsewhere.
    assert np.abs(current[0, 1].numpy() - true[2]).max() > 1e-3
    assert model.physics_steps == 3 * 2 * hand.config.frame_skip
    model.close()


def test_unknown_start_states_are_refused():
    hand, x0 = _warm_sim("baoding")
    model = SimulatorModel(hand)
    with pytest.raises(RuntimeError, match="anchor"):
        model.predict(torch.zeros(1, x0.size), torch.zeros(1, 24))
    model.anchor(hand.get_state(), x0)
    other = torch.as_tensor(x0, dtype=torch.float32) + 0.01
    with pytest.raises(ValueError, match="anchored state"):
        model.predict(other.expand(2, -1), torch.zeros(2, 24))
    model.close()


def test_a_planner_plans_on_it(one_torch_thread):
    hand, x0 = _warm_sim("baoding")
    task = make_task("baoding")
    model = SimulatorModel(hand)
    model.anchor(hand.get_state(), x0)
    planner = make_planner("mppi", model, task, num_samples=8, horizon=3, seed=0)
    goals = task.goal_window(task.episode_goals(0, 10), 1, 3)
    result = planner.plan(torch.as_tensor(x0, dtype=torch.float32), goals)
    assert result.actions.shape == (3, 24)
    assert np.isfinite(result.predicted_return)
    model.close()


@pytest.mark.parametrize("scene", ["baoding", "cube"])
def test_a_model_that_sees_only_the_task_state_plans_from_its_fields(scene):
    """``sees="state"``: the anchor is rebuilt from the task state's object fields (what a
    learned model sees), so their velocities move its predictions; the full model reads the
    simulator's own state and ignores them."""
    hand, x0 = _warm_sim(scene)
    layout = make_task(scene).layout
    vel, pos = (("ball1_vel", "ball1_pos") if scene == "baoding" else ("cube_linvel", "cube_pos"))
    faster = x0.copy()
    faster[layout.slice(vel)] += 0.2  # m/s
    predicted = {}
    for sees in ("full", "state"):
        model = SimulatorModel(hand, sees=sees)
        predicted[sees] = []
        for x in (x0, faster):
            model.anchor(hand.get_state(), x)
            state = torch.as_tensor(x, dtype=torch.float32)[None]
            predicted[sees].append(model.predict(state, torch.zeros(1, 24))[0, 0].numpy())
        model.close()
    np.testing.assert_array_equal(predicted["full"][0], predicted["full"][1])
    moved = predicted["state"][1][layout.slice(pos)] - predicted["state"][0][layout.slice(pos)]
    assert np.abs(moved).max() > 1e-3, moved
    with pytest.raises(ValueError, match="sees"):
        SimulatorModel(hand, sees="everything")
