"""MPC: exact warm-start shift, fallback order, reset, model swap, closed loop."""

from __future__ import annotations

import pytest
import torch

from mbrl_ros.core.planners import MPPIConfig, MPPIPlanner, RandomShootingConfig
from mbrl_ros.core.planners import RandomShootingPlanner as _RandomShooting
from mbrl_ros.core.planning.mpc import ModelPredictiveController, shift_plan
from mbrl_ros.core.tasks import StateLayout, Task


class LineTask(Task):
    """1-D point mass ``[x, target]``, reward ``-|x - goal|``."""

    def __init__(self) -> None:
        super().__init__("line", StateLayout((("x", 1), ("target", 1))), 1, 1, 10, ("target",))

    def episode_goals(self, seed, length=None):
        return torch.full((self._episode_length_arg(length), 1), 7.0)

    def step_error(self, states, goals):
        return (states[..., :1] - goals).abs().sum(dim=-1)

    def reward(self, states, actions, goals):
        error = self.step_error(states, goals)
        return -error, torch.zeros_like(error, dtype=torch.bool)

    def episode_success(self, errors, dropped):
        return bool(errors[-1] < 0.1)


class LineModel:
    """``x' = x + gain * a`` for every member."""

    def __init__(self, gain: float = 1.0, members: int = 2) -> None:
        self.num_members, self.state_dim, self.action_dim = members, 2, 1
        self.gain = gain

    def predict(self, state, action, sample=False, generator=None):
        state = state.expand(self.num_members, *state.shape[-2:])
        return torch.cat((state[..., :1] + self.gain * action, state[..., 1:]), dim=-1)


class RecordingPlanner(_RandomShooting):
    """Random shooting that records the warm start it was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def plan(self, state, goals, prev_plan=None, prev_action=None):
        self.calls.append((prev_plan, prev_action))
        return super().plan(state, goals, prev_plan, prev_action)


def make_mpc(planner_cls=RecordingPlanner, horizon=4, **cfg):
    task = LineTask()
    config = RandomShootingConfig(horizon=horizon, num_samples=64, seed=0, **cfg)
    return ModelPredictiveController(planner_cls(LineModel(), task, config), task)


def test_shift_plan_is_exact():
    plan = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    torch.testing.assert_close(shift_plan(plan), torch.tensor([[2.0, 20.0], [3.0, 30.0],
                                                               [3.0, 30.0]]))
    torch.testing.assert_close(shift_plan(plan[:1]), plan[:1])
    assert torch.equal(plan[0], torch.tensor([1.0, 10.0]))  # input untouched
    with pytest.raises(ValueError):
        shift_plan(torch.zeros(3))


def test_step_warm_starts_from_the_shifted_plan_and_previous_action():
    mpc = make_mpc()
    state, goals = torch.tensor([3.0, 7.0]), torch.full((4, 1), 7.0)
    first = mpc.step(state, goals)
    plan = mpc.last_result.actions
    assert torch.equal(first, plan[0])
    assert mpc.planner.calls[0] == (None, None)
    mpc.step(state, goals)
    prev_plan, prev_action = mpc.planner.calls[1]
    torch.testing.assert_close(prev_plan, shift_plan(plan))
    torch.testing.assert_close(prev_action, plan[0])


def test_fallback_returns_the_plan_actions_in_order_then_repeats_the_last():
    mpc = make_mpc()
    goals = torch.full((4, 1), 7.0)
    first = mpc.step(torch.tensor([3.0, 7.0]), goals)
    plan = mpc.last_result.actions.clone()
    taken = [first] + [mpc.fallback_action() for _ in range(5)]
    expected = [plan[0], plan[1], plan[2], plan[3], plan[3], plan[3]]
    for got, want in zip(taken, expected, strict=True):
        torch.testing.assert_close(got, want)
    # The next plan warm-starts from the advanced buffer, with the last fallback as a_prev.
    mpc.step(torch.tensor([3.0, 7.0]), goals)
    prev_plan, prev_action = mpc.planner.calls[-1]
    torch.testing.assert_close(prev_plan, plan[3].expand(4, 1))
    torch.testing.assert_close(prev_action, plan[3])


def test_reset_clears_plan_warm_start_and_previous_action():
    mpc = make_mpc()
    mpc.step(torch.tensor([3.0, 7.0]), torch.full((4, 1), 7.0))
    mpc.reset()
    assert mpc.last_result is None
    assert mpc.warm_start() == (None, None)
    torch.testing.assert_close(mpc.fallback_action(), torch.zeros(1))
    mpc.step(torch.tensor([3.0, 7.0]), torch.full((4, 1), 7.0))
    assert mpc.planner.calls[-1][0] is None


def test_set_model_swaps_the_model_between_plans():
    task = LineTask()
    planner = MPPIPlanner(LineModel(gain=1.0), task, MPPIConfig(horizon=4, seed=1))
    mpc = ModelPredictiveController(planner, task, horizon=4)
    state, goals = torch.tensor([6.5, 7.0]), torch.full((4, 1), 7.0)
    mpc.step(state, goals)
    assert float(mpc.last_result.predicted_states[1, 0]) == pytest.approx(
        6.5 + float(mpc.last_result.actions[0, 0]), abs=1e-5)
    mpc.set_model(LineModel(gain=0.5))
    mpc.step(state, goals)
    assert float(mpc.last_result.predicted_states[1, 0]) == pytest.approx(
        6.5 + 0.5 * float(mpc.last_result.actions[0, 0]), abs=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        ModelPredictiveController(planner, task, horizon=5)


def test_mppi_mpc_closed_loop_reaches_the_goal():
    task = LineTask()
    mpc = ModelPredictiveController(MPPIPlanner(LineModel(), task, MPPIConfig(horizon=6, seed=2)),
                                    task)
    goals = task.episode_goals(0, 20)
    x = torch.tensor([3.0, 7.0])
    for t in range(8):
        a = mpc.step(x, task.goal_window(goals, t + 1, 6))
        x = torch.stack((x[0] + a[0], goals[t + 1, 0]))
    assert abs(float(x[0]) - 7.0) < 0.3
