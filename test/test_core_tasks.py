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


def world_goal(x1, y1, x2, y2, z=0.2):
    """A world-frame Baoding goal (two 3-D target points; the reward uses their xy)."""
    return torch.tensor([x1, y1, z, x2, y2, z])


def test_baoding_reward_hand_computed_with_drop_and_wrist_cases():
    task = BaodingTask(frame="world")
    goals = world_goal(0.0, 0.05, 0.03, 0.0)
    # ball 1 is 3-4-5 away from target 1 (5 cm), ball 2 exactly on target 2.
    ok = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.10))
    dropped = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.05))
    wrist = baoding_state((0.03, 0.09, 0.10), (0.03, 0.0, 0.10), wrist=0.2)
    states = torch.stack((ok, dropped, wrist)).view(3, 1, 40).expand(3, 2, 40)
    reward, terminated = task.reward(states, torch.zeros(3, 2, 24), goals)
    expected = torch.tensor([-0.25, -500.25, -10.25])[:, None].expand(3, 2)
    torch.testing.assert_close(reward, expected)
    assert terminated.tolist() == [[False, False], [True, True], [False, False]]


def test_baoding_palm_targets_follow_the_wrist_in_the_reward():
    """Palm frame (the default): a ball placed on its target's world xy for the state's own
    wrist angles scores zero distance; the same ball with another wrist pose does not."""
    task = BaodingTask()
    assert task.frame == "palm" and task.goal_dim == 6 and task.drop_height == 0.06
    goal = task.episode_goals(0, 1)[0]
    states = torch.zeros(3, 40)
    states[:, 0:2] = torch.tensor([[0.0, -0.4], [0.1, 0.0], [-0.3, 0.3]])
    targets = task.target_world_xy(states, goal)  # [3, 2, 2]
    states[:, 24:26], states[:, 30:32] = targets[:, 0], targets[:, 1]
    states[:, 26] = states[:, 32] = 0.15
    reward, dropped = task.reward(states, torch.zeros(24), goal)
    torch.testing.assert_close(reward[:2], torch.zeros(2))
    assert reward[2] == -10.0 and not dropped.any()  # wrist 0.3 > 0.15: PDDM's penalty only
    moved = states.clone()
    moved[:, 1] += 0.2
    assert bool((task.reward(moved, torch.zeros(24), goal)[0][:2] < -0.05).all())
    # the goal fields hold the same world xy
    torch.testing.assert_close(task.insert_goal(states, goal)[:, 36:40], targets.reshape(3, 4))


def test_baoding_reward_checks_shapes():
    task = BaodingTask()
    with pytest.raises(ValueError, match="last dimension 40"):
        task.reward(torch.zeros(39), torch.zeros(24), torch.zeros(6))
    with pytest.raises(ValueError, match="last dimension 6"):
        task.reward(torch.zeros(40), torch.zeros(24), torch.zeros(4))
    with pytest.raises(ValueError, match="frame"):
        BaodingTask(frame="forearm")


def test_baoding_goal_schedule_start_angles_and_quarter_turn_ccw():
    """PDDM's palm-frame ellipse: (x, z) = (0.005, 0.055) + (0.02 cos t, 0.036 sin t), y -0.07."""
    task = BaodingTask()
    goals = task.episode_goals(seed=0)
    assert goals.shape == (100, 6) and goals.dtype == torch.float32
    cx, cz, rx, rz = 0.005, 0.055, 0.02, 0.036

    def on_ellipse(angle):
        return [cx + rx * math.cos(angle), -0.07, cz + rz * math.sin(angle)]

    start = on_ellipse(3 * math.pi / 4) + on_ellipse(-math.pi / 4)
    quarter = on_ellipse(5 * math.pi / 4) + on_ellipse(math.pi / 4)
    torch.testing.assert_close(goals[0], torch.tensor(start))
    torch.testing.assert_close(goals[15], torch.tensor(quarter))
    torch.testing.assert_close(goals[60], goals[0])
    torch.testing.assert_close(task.episode_goals(seed=5), goals)
    clockwise = BaodingTask(direction=-1).episode_goals(0, 16)
    torch.testing.assert_close(clockwise[15], torch.tensor(
        on_ellipse(math.pi / 4) + on_ellipse(-3 * math.pi / 4)))
    # world frame: the same ellipse in the world x-y plane at height plane_offset
    world = BaodingTask(frame="world", centre=(0.0064, -0.0323), radii=(0.02, 0.0332),
                        plane_offset=0.2).episode_goals(0, 1)[0]
    torch.testing.assert_close(world[:3], torch.tensor(
        [0.0064 + 0.02 * math.cos(3 * math.pi / 4), -0.0323 + 0.0332 * math.sin(
            3 * math.pi / 4), 0.2]))


def test_goal_window_pads_with_last_goal():
    task = BaodingTask()
    goals = torch.arange(30, dtype=torch.float32).view(5, 6)
    window = task.goal_window(goals, step=3, horizon=4)
    torch.testing.assert_close(window, goals[[3, 4, 4, 4]])
    torch.testing.assert_close(task.goal_window(goals, 9, 2), goals[[4, 4]])
    with pytest.raises(ValueError):
        task.goal_window(goals, -1, 2)


def test_insert_goal_writes_target_fields_only():
    task = BaodingTask(frame="world")
    states = torch.zeros(2, 3, 40)
    goals = world_goal(1.0, 2.0, 3.0, 4.0)
    out = task.insert_goal(states, goals)
    assert float(states.abs().sum()) == 0.0  # out of place
    torch.testing.assert_close(out[..., 36:40], torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(2, 3, 4))
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
    task = BaodingTask(frame="world")
    states[:, 26] = 0.1
    states[:, 32] = 0.1

    def goals_of(s):
        z = torch.zeros(len(s), 1)
        return torch.cat([s[:, 36:38], z, s[:, 38:40], z], dim=1)

    r1, _ = task.reward(states, torch.zeros(24), goals_of(states))
    r2, _ = task.reward(swap_balls(states), torch.zeros(24), goals_of(swap_balls(states)))
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
    states[:, 1] = -0.398  # the keyframe wrist
    states[:, 26] = states[:, 32] = 0.1
    targets = task.target_world_xy(states, goals)
    states[:, 24:26] = targets[:, 0] + torch.tensor([0.01, 0.0])
    states[:, 30:32] = targets[:, 1] + torch.tensor([0.0, -0.01])
    task.insert_goal_(states, goals)
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


def test_cube_reward_is_pddms_l2_error_and_drop_penalty():
    task = CubeTask()
    s = torch.zeros(2, 39)
    s[:, 27:30] = torch.tensor([0.3, -0.4, 0.3])
    s[1, 26] = -0.2  # dropped: 0.2 m below the start position
    goals = torch.tensor([0.0, 0.0, 1.5])  # "right"
    # difference (0.3, -0.4, -1.2): L2 norm 1.3 (L1 would be 1.9)
    torch.testing.assert_close(task.step_error(s, goals), torch.tensor([1.3, 1.3]))
    reward, terminated = task.reward(s, torch.zeros(24), goals)
    torch.testing.assert_close(reward, torch.tensor([-9.1, -1009.1]))
    assert terminated.tolist() == [False, True]
    out = task.insert_goal(s, goals)
    torch.testing.assert_close(out[:, 36:39], goals.expand(2, 3))
    turned = torch.zeros(39)
    turned[29] = 1.5 + 2 * math.pi  # no wrapping, as PDDM
    assert float(task.step_error(turned, goals)) == pytest.approx(2 * math.pi, abs=1e-5)


def test_cube_goals_are_pddms_four_orientations():
    table = dict(zip(CubeTask().goal_names, CubeTask().goal_table.tolist(), strict=True))
    assert table == {"left": [0.0, 0.0, -1.5], "right": [0.0, 0.0, 1.5],
                     "up": [1.5, 0.0, 0.0], "down": [-1.5, 0.0, 0.0]}
    for name in ("left", "right"):  # only the Euler angle about z (index 2) changes
        assert table[name][:2] == [0.0, 0.0] and abs(table[name][2]) == 1.5
    for name in ("up", "down"):  # only the Euler angle about x (index 0) changes
        assert table[name][1:] == [0.0, 0.0] and abs(table[name][0]) == 1.5


def test_cube_holds_one_seeded_goal_per_episode():
    task = CubeTask()
    table = dict(zip(task.goal_names, task.goal_table, strict=True))
    chosen = []
    for seed in range(12):
        goals = task.episode_goals(seed)
        assert goals.shape == (70, 3)
        name = task.goal_name(seed)
        assert torch.equal(goals, table[name].expand(70, 3))  # constant all episode
        assert torch.equal(task.episode_goals(seed), goals)  # deterministic per seed
        chosen.append(name)
    # seed s -> goal s mod 4: seeds 0..3 reach all four goals
    assert chosen[:4] == ["left", "right", "up", "down"] and chosen[4:8] == chosen[:4]
    assert task.goal_name(2**32 + 2) == "up" and task.goal_name(-1) == "down"
    long = task.episode_goals(3, 200)
    assert torch.equal(long, table["down"].expand(200, 3))
    assert torch.equal(task.goal_window(task.episode_goals(5), 65, 10),
                       table["right"].expand(10, 3))


def test_cube_fixed_goal_and_bad_goals():
    task = CubeTask(goal="up")
    for seed in range(4):
        assert task.goal_name(seed) == "up"
        assert task.episode_goals(seed)[0].tolist() == [1.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="cube goal must be"):
        CubeTask(goal="sideways")
    with pytest.raises(ValueError, match="3 finite"):
        CubeTask(goals={"tilt": (0.0, 1.0)})
    with pytest.raises(ValueError, match="success_from_step"):
        CubeTask(success_from_step=-1)


def test_cube_goal_set_with_halves_visits_pddms_eight_turns_in_turn():
    """cube.goal_set pddm_with_halves: seeded episodes cycle through the four turns, then
    PDDM's half turns (+-0.7 rad about the same axes); the default set stays PDDM's four,
    and a half turn as the fixed goal needs the set that holds it."""
    from mbrl_ros.core.tasks.from_values import stack_task

    task = stack_task("cube", values={"cube.goal_set": "pddm_with_halves"})
    names = [task.goal_name(seed) for seed in range(16)]
    assert names[:8] == ["left", "right", "up", "down",
                         "half_left", "half_right", "half_up", "half_down"]
    assert names[8:] == names[:8]
    assert task.episode_goals(7)[0].tolist() == pytest.approx([-0.7, 0.0, 0.0])
    assert task.episode_goals(4)[0].tolist() == pytest.approx([0.0, 0.0, -0.7])
    assert stack_task("cube").goal_names == ("left", "right", "up", "down")
    fixed = stack_task("cube", values={"cube.goal_set": "pddm_with_halves",
                                       "cube.goal": "half_up"})
    assert fixed.episode_goals(0)[0].tolist() == pytest.approx([0.7, 0.0, 0.0])
    with pytest.raises(ValueError, match="cube goal must be"):
        stack_task("cube", values={"cube.goal": "half_up"})
    with pytest.raises(ValueError, match="goal_set must be one of"):
        stack_task("cube", values={"cube.goal_set": "quarters"})


def test_stack_task_refuses_a_setting_no_task_declares():
    """A misspelt or unprefixed setting is an error, not silently the default."""
    from mbrl_ros.core.tasks.from_values import stack_task

    with pytest.raises(ValueError, match=r"unknown task settings \['goal_set'\]"):
        stack_task("cube", values={"goal_set": "pddm_with_halves"})


def test_cube_success_is_mean_error_below_threshold_from_step_10():
    task = CubeTask()
    assert task.success_from_step == 10 and task.success_error == 0.2
    errors = torch.full((70,), 0.1)
    errors[:10] = 3.0  # the first 10 steps (turning the cube) do not count
    assert task.episode_success(errors, dropped=False)
    assert not task.episode_success(errors, dropped=True)
    spike = errors.clone()
    spike[40] = 0.1 + 60 * 0.11  # tail mean 0.1 + 0.11 = 0.21
    assert not task.episode_success(spike, dropped=False)
    spike[40] = 0.1 + 60 * 0.09  # tail mean 0.19: one step far off, the mean below 0.2
    assert task.episode_success(spike, dropped=False)
    late = errors.clone()
    late[9] = 9.0  # step 9 does not count
    assert task.episode_success(late, dropped=False)
    late[10] = 9.0  # step 10 counts: tail mean (59 * 0.1 + 9) / 60 = 0.248
    assert not task.episode_success(late, dropped=False)
    # an episode of at most success_from_step steps is judged on its last step
    assert task.episode_success(torch.tensor([3.0, 3.0, 0.1]), dropped=False)
    assert not task.episode_success(torch.tensor([0.1, 0.1, 0.3]), dropped=False)


def test_cube_episode_metrics():
    task = CubeTask(episode_length=12)
    goals = task.episode_goals(2)  # "up"
    states = torch.zeros(13, 39)
    states[1:, 27:30] = goals
    states[1:4, 27] = 0.0  # the first 3 reached states still at the start orientation
    m = task.episode_metrics(states, torch.zeros(12, 24), torch.cat((goals[:1], goals)))
    assert m["success"] and not m["drop"] and m["steps"] == 12
    assert m["tracking_error"] == pytest.approx(3 * 1.5 / 12)
    assert m["return"] == pytest.approx(-7 * 3 * 1.5)
    states[11:, 26] = -0.15  # dropped on reaching s_11
    m = task.episode_metrics(states, torch.zeros(12, 24), torch.cat((goals[:1], goals)))
    assert m["drop"] and not m["success"] and m["steps"] == 11
    assert m["return"] == pytest.approx(-7 * 3 * 1.5 - 1000.0)


def test_make_task_registry_and_overrides():
    assert isinstance(make_task("baoding"), BaodingTask)
    cube = make_task("cube", goal="down")
    assert isinstance(cube, CubeTask) and cube.episode_goals(0)[0].tolist() == [-1.5, 0.0, 0.0]
    assert make_task("baoding", period=30).episode_goals(0, 16)[15].tolist() == pytest.approx(
        make_task("baoding").episode_goals(0, 31)[30].tolist())
    with pytest.raises(ValueError, match="unknown task"):
        make_task("valve")
    with pytest.raises(ValueError, match="bad parameters"):
        make_task("baoding", radius=3)
    with pytest.raises(ValueError, match="direction"):
        make_task("baoding", direction=2)


def test_double_by_ball_swap_on_the_dataset_transition_batch():
    from mbrl_ros.core.data.dataset import TransitionBatch

    batch = TransitionBatch.from_arrays(torch.randn(3, 40), torch.randn(3, 24), torch.randn(3, 40))
    doubled = double_by_ball_swap(batch)
    assert isinstance(doubled, TransitionBatch) and len(doubled) == 6
    torch.testing.assert_close(doubled.next_state[3:], swap_balls(batch.next_state))
    torch.testing.assert_close(doubled.action[3:], batch.action)


def test_terminates_is_the_rewards_drop_flag_for_one_state():
    task = BaodingTask()
    goal = task.episode_goals(0, 1)[0].double()
    held = baoding_state((0.0, 0.0, 0.15), (0.03, 0.0, 0.15)).double()
    fallen = baoding_state((0.0, 0.0, 0.15), (0.03, 0.0, 0.05)).double()  # below 0.06
    assert not task.terminates(held, goal) and task.terminates(fallen, goal)
    cube = CubeTask()
    state = torch.zeros(cube.state_dim, dtype=torch.float64)
    assert not cube.terminates(state, cube.episode_goals(0, 1)[0])
    state[cube.layout.start("cube_pos") + 2] = -0.2
    assert cube.terminates(state, cube.episode_goals(0, 1)[0])


def test_a_new_task_is_one_class_and_one_registry_line(monkeypatch):
    """The stack's task settings and builder are generated from the registered classes:
    a task declares its settings dataclass, tracked objects and augmentation, nothing else
    names it (no if/elif on task names)."""
    import dataclasses

    from mbrl_ros.core.estimation.state_assembly import TaskStateAssembler
    from mbrl_ros.core.tasks import TASKS
    from mbrl_ros.core.tasks.base import StateLayout, Task, TrackedObject, setting
    from mbrl_ros.core.tasks.from_values import stack_task, task_defaults, task_settings

    @dataclasses.dataclass(frozen=True)
    class ReachSettings:
        tolerance: float = setting(0.01, "how close counts as reached (m)", 0.0, 1.0)

    class Reach(Task):
        settings_type = ReachSettings
        tracked_objects = (TrackedObject("puck", "puck_pos", "puck_vel"),)

        def __init__(self, tolerance: float = 0.01, episode_length: int = 20) -> None:
            layout = StateLayout((("joints", 2), ("puck_pos", 3), ("puck_vel", 3),
                                  ("target", 3)))
            super().__init__("reach", layout, action_dim=2, goal_dim=3,
                             episode_length=episode_length, goal_fields=("target",))
            self.tolerance = tolerance

        @classmethod
        def from_settings(cls, settings, episode_length=None, robot=None):
            extra = {} if episode_length is None else {"episode_length": episode_length}
            return cls(settings.tolerance, **extra)

        def episode_goals(self, seed, length=None):
            return torch.zeros(self._episode_length_arg(length), 3)

        def reward(self, states, actions, goals):
            d = torch.linalg.vector_norm(states[..., 2:5] - goals, dim=-1)
            return -d, d < 0

        def step_error(self, states, goals):
            return torch.linalg.vector_norm(states[..., 2:5] - goals, dim=-1)

        def episode_success(self, errors, dropped):
            return bool(errors.mean() < self.tolerance)

    monkeypatch.setitem(TASKS, "reach", Reach)
    assert task_settings()["reach.tolerance"][1].description == "how close counts as reached (m)"
    assert task_defaults()["reach.tolerance"] == 0.01
    task = stack_task("reach", episode_length=7, values={"reach.tolerance": 0.05})
    assert isinstance(task, Reach) and task.tolerance == 0.05 and task.episode_length == 7
    assert TaskStateAssembler(task).object_names == ("puck",)
    assert task.augmentation is None
