"""Tasks: hand-computed rewards, goal schedules, metrics, ball-swap augmentation, registry."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from mbrl_ros.core.tasks import (
    BAODING_LAYOUT,
    BaodingTask,
    CubeTask,
    StateLayout,
    double_by_ball_swap,
    make_task,
    swap_balls,
    swap_balls_batch,
)


def baoding_state(ball1, ball2, targets=(0.0, 0.0, 0.0, 0.0), wrist=0.0):
    s = torch.zeros(40)
    s[1] = wrist
    s[24:27] = torch.tensor(ball1)
    s[27:30] = torch.tensor([0.1, 0.2, 0.3])
    s[30:33] = torch.tensor(ball2)
    s[33:36] = torch.tensor([-0.1, -0.2, -0.3])
    s[36:40] = torch.tensor(targets)
    return s


def test_state_layout_fields_and_message_description():
    layout = StateLayout((("a", 2), ("b", 3), ("c", 1)))
    assert layout.dim == 6
    assert layout.slice("b") == slice(2, 5)
    assert layout.span(("b", "c")) == slice(2, 6)
    assert layout.to_msg_fields() == [("a", 0, 2), ("b", 2, 3), ("c", 5, 1)]
    assert BAODING_LAYOUT.dim == 40
    with pytest.raises(ValueError, match="unique"):
        StateLayout((("a", 1), ("a", 2)))
    with pytest.raises(ValueError, match="consecutive"):
        layout.span(("a", "c"))
    with pytest.raises(KeyError):
        layout.slice("missing")


def test_baoding_reward_hand_computed_with_drop_and_wrist_cases():
    task = BaodingTask()
    goals = torch.tensor([0.0, 0.05, 0.03, 0.0])
    # ball 1 is 3-4-5 away from target 1 (5 cm), ball 2 exactly on target 2.
    ok = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.10))
    dropped = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.05))
    wrist = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.10), wrist=0.2)
    states = torch.stack((ok, dropped, wrist)).view(3, 1, 40).expand(3, 2, 40)
    reward, terminated = task.reward(states, torch.zeros(3, 2, 24), goals)
    expected = torch.tensor([-0.25, -500.25, -10.25])[:, None].expand(3, 2)
    torch.testing.assert_close(reward, expected)
    assert terminated.tolist() == [[False, False], [True, True], [False, False]]


def test_baoding_reward_checks_shapes():
    task = BaodingTask()
    with pytest.raises(ValueError, match="last dimension 40"):
        task.reward(torch.zeros(39), torch.zeros(24), torch.zeros(4))
    with pytest.raises(ValueError, match="last dimension 4"):
        task.reward(torch.zeros(40), torch.zeros(24), torch.zeros(3))


def test_baoding_goal_schedule_start_angles_and_quarter_turn_ccw():
    task = BaodingTask()
    goals = task.episode_goals(seed=0)
    assert goals.shape == (100, 4) and goals.dtype == torch.float32
    cx, cy, rx, ry = 0.005, 0.055, 0.02, 0.036

    def on_ellipse(angle):
        return [cx + rx * math.cos(angle), cy + ry * math.sin(angle)]

    start = on_ellipse(3 * math.pi / 4) + on_ellipse(-math.pi / 4)
    quarter = on_ellipse(5 * math.pi / 4) + on_ellipse(math.pi / 4)
    torch.testing.assert_close(goals[0], torch.tensor(start))
    torch.testing.assert_close(goals[15], torch.tensor(quarter))
    torch.testing.assert_close(goals[60], goals[0])
    torch.testing.assert_close(task.episode_goals(seed=5), goals)
    clockwise = BaodingTask(direction=-1).episode_goals(0, 16)
    torch.testing.assert_close(clockwise[15], torch.tensor(
        on_ellipse(math.pi / 4) + on_ellipse(-3 * math.pi / 4)))


def test_goal_window_pads_with_last_goal():
    task = BaodingTask()
    goals = torch.arange(20, dtype=torch.float32).view(5, 4)
    window = task.goal_window(goals, step=3, horizon=4)
    torch.testing.assert_close(window, goals[[3, 4, 4, 4]])
    torch.testing.assert_close(task.goal_window(goals, 9, 2), goals[[4, 4]])
    with pytest.raises(ValueError):
        task.goal_window(goals, -1, 2)


def test_insert_goal_writes_target_fields_only():
    task = BaodingTask()
    states = torch.zeros(2, 3, 40)
    goals = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = task.insert_goal(states, goals)
    assert float(states.abs().sum()) == 0.0  # out of place
    torch.testing.assert_close(out[..., 36:40], goals.expand(2, 3, 4))
    assert float(out[..., :36].abs().sum()) == 0.0
    task.insert_goal_(states, goals)
    torch.testing.assert_close(states, out)


def test_ball_swap_is_an_involution_that_exchanges_balls_and_targets():
    states = torch.randn(5, 40)
    swapped = swap_balls(states)
    torch.testing.assert_close(swapped[:, 24:30], states[:, 30:36])
    torch.testing.assert_close(swapped[:, 30:36], states[:, 24:30])
    torch.testing.assert_close(swapped[:, 36:38], states[:, 38:40])
    torch.testing.assert_close(swapped[:, :24], states[:, :24])
    assert not torch.equal(swapped, states)
    torch.testing.assert_close(swap_balls(swapped), states)
    # The reward is invariant under relabelling the balls (and their targets).
    task = BaodingTask()
    states[:, 26] = 0.1
    states[:, 32] = 0.1
    r1, _ = task.reward(states, torch.zeros(24), states[:, 36:40])
    r2, _ = task.reward(swap_balls(states), torch.zeros(24), swap_balls(states)[:, 36:40])
    torch.testing.assert_close(r1, r2)


@dataclass(frozen=True)
class _Batch:
    state: torch.Tensor
    action: torch.Tensor
    next_state: torch.Tensor

    @staticmethod
    def concatenate(batches):
        return _Batch(*(torch.cat([getattr(b, f) for b in batches]) for f in
                        ("state", "action", "next_state")))


def test_ball_swap_batch_hook_copies_other_fields_and_doubles():
    batch = _Batch(torch.randn(4, 40), torch.randn(4, 24), torch.randn(4, 40))
    swapped = swap_balls_batch(batch)
    assert swapped.action is batch.action
    torch.testing.assert_close(swapped.next_state, swap_balls(batch.next_state))
    torch.testing.assert_close(swap_balls_batch(swapped).state, batch.state)
    doubled = double_by_ball_swap(batch)
    assert doubled.state.shape == (8, 40)
    torch.testing.assert_close(doubled.state[4:], swap_balls(batch.state))
    with pytest.raises(TypeError):
        swap_balls_batch(object())


def test_baoding_episode_metrics_known_answers():
    task = BaodingTask()
    goals = task.episode_goals(0, 4)
    states = torch.zeros(4, 40)
    states[:, 26] = states[:, 32] = 0.1
    states[:, 24:26] = goals[:, 0:2] + torch.tensor([0.01, 0.0])
    states[:, 30:32] = goals[:, 2:4] + torch.tensor([0.0, -0.01])
    states[:, 36:40] = goals
    m = task.episode_metrics(states, torch.zeros(3, 24), goals)
    assert m["steps"] == 3 and not m["drop"] and m["success"]
    assert m["return"] == pytest.approx(-0.3, abs=1e-6)
    assert m["score"] == pytest.approx(-0.02, abs=1e-6)
    assert m["tracking_error"] == pytest.approx(0.01, abs=1e-6)
    far = states.clone()
    far[:, 24] += 0.05  # ball 1 now 6 cm off: mean error 3.5 cm > 2 cm
    assert not task.episode_metrics(far, torch.zeros(3, 24), goals)["success"]
    fell = states.clone()
    fell[2:, 26] = 0.0  # ball 1 falls when reaching s_2
    m = task.episode_metrics(fell, torch.zeros(3, 24), goals)
    assert m["drop"] and not m["success"] and m["steps"] == 2
    assert m["return"] == pytest.approx(-0.2 - 500.0, abs=1e-4)


def test_cube_reward_hand_computed():
    task = CubeTask()
    s = torch.zeros(2, 39)
    s[:, 27:30] = torch.tensor([0.1, -0.2, 0.3])
    s[1, 26] = -0.2  # dropped
    goals = torch.tensor([0.0, 0.0, 1.5])
    reward, terminated = task.reward(s, torch.zeros(24), goals)
    torch.testing.assert_close(reward, torch.tensor([-10.5, -1010.5]))
    assert terminated.tolist() == [False, True]
    out = task.insert_goal(s, goals)
    torch.testing.assert_close(out[:, 36:39], goals.expand(2, 3))


def test_cube_goal_schedule_segments_and_seeds():
    task = CubeTask()
    options = {tuple(v) for v in task.goal_table.tolist()}
    orders = set()
    for seed in range(8):
        goals = task.episode_goals(seed)
        assert goals.shape == (70, 3)
        first, second = goals[0], goals[35]
        assert torch.equal(goals[:35], first.expand(35, 3))
        assert torch.equal(goals[35:], second.expand(35, 3))
        assert tuple(first.tolist()) in options and tuple(second.tolist()) in options
        assert not torch.equal(first, second)
        assert torch.equal(task.episode_goals(seed), goals)
        orders.add((tuple(first.tolist()), tuple(second.tolist())))
    assert len(orders) > 1
    assert torch.equal(task.episode_goals(3, 200)[:70], task.episode_goals(3))


def test_cube_success_needs_each_segment_to_end_on_target():
    task = CubeTask(hold_steps=4, episode_length=8, success_steps=2, success_error=0.5)
    ok = torch.tensor([2.0, 1.0, 0.4, 0.1, 3.0, 2.0, 0.3, 0.2])
    assert task.episode_success(ok, dropped=False)
    assert not task.episode_success(ok, dropped=True)
    late = ok.clone()
    late[2] = 0.6  # first segment's second-to-last step misses
    assert not task.episode_success(late, dropped=False)
    goals = task.episode_goals(1)
    states = torch.zeros(9, 39)
    states[1:, 27:30] = goals
    m = task.episode_metrics(states, torch.zeros(8, 24), torch.cat((goals[:1], goals)))
    assert m["success"] and m["tracking_error"] == 0.0 and m["return"] == 0.0


def test_make_task_registry_and_overrides():
    assert isinstance(make_task("baoding"), BaodingTask)
    cube = make_task("cube", hold_steps=10)
    assert isinstance(cube, CubeTask) and cube.hold_steps == 10
    assert make_task("baoding", period=30).episode_goals(0, 16)[15].tolist() == pytest.approx(
        make_task("baoding").episode_goals(0, 31)[30].tolist())
    with pytest.raises(ValueError, match="unknown task"):
        make_task("valve")
    with pytest.raises(ValueError, match="bad parameters"):
        make_task("baoding", radius=3)
    with pytest.raises(ValueError, match="direction"):
        make_task("baoding", direction=2)


def test_double_by_ball_swap_on_the_dataset_transition_batch():
    from mbrl_ros.core.dataset import TransitionBatch

    batch = TransitionBatch.from_arrays(torch.randn(3, 40), torch.randn(3, 24), torch.randn(3, 40))
    doubled = double_by_ball_swap(batch)
    assert isinstance(doubled, TransitionBatch) and len(doubled) == 6
    torch.testing.assert_close(doubled.next_state[3:], swap_balls(batch.next_state))
    torch.testing.assert_close(doubled.action[3:], batch.action)
