"""PDDM's random-velocity exploration: bounds, velocity holding, limits, per-episode seeds."""

from __future__ import annotations

import numpy as np
import pytest

from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration


def rollout(policy: RandomVelocityExploration, steps: int) -> np.ndarray:
    return np.array([policy.act() for _ in range(steps)])


def test_actions_stay_in_the_box_and_move_at_pddm_velocities():
    policy = RandomVelocityExploration(24, seed=3)
    policy.reset(episode_id=5)
    actions = rollout(policy, 200)
    assert actions.shape == (200, 24)
    assert np.all(np.abs(actions) <= 1.0)
    steps = np.abs(np.diff(actions, axis=0))
    inside = (np.abs(actions[1:]) < 1.0) & (np.abs(actions[:-1]) < 1.0)
    assert inside.mean() > 0.3  # enough unclipped steps to check
    assert np.all(steps[inside] >= 0.05 - 1e-12)
    assert np.all(steps[inside] <= 0.15 + 1e-12)
    assert np.all(steps <= 0.15 + 1e-12)  # clipping only shortens a step


def test_each_velocity_is_held_for_two_steps():
    policy = RandomVelocityExploration(24, ExplorationConfig(initial_action="zero"), seed=1)
    policy.reset(episode_id=1)
    actions = rollout(policy, 9)
    np.testing.assert_array_equal(actions[0], np.zeros(24))
    deltas = np.diff(actions, axis=0)  # delta i: the step from action i to action i + 1
    # Velocity draws happen at act 0 (used once), then at acts 2, 4, 6...: deltas 1-2, 3-4,
    # 5-6 share a velocity (none of the first few steps can reach a limit from zero).
    for first in (1, 3, 5):
        np.testing.assert_allclose(deltas[first], deltas[first + 1], atol=1e-12)
    assert not np.allclose(deltas[1], deltas[3])


def test_same_episode_same_actions_other_episode_other_actions():
    a = RandomVelocityExploration(24, seed=7)
    b = RandomVelocityExploration(24, seed=7)
    a.reset(4)
    b.reset(4)
    first = rollout(a, 20)
    np.testing.assert_array_equal(first, rollout(b, 20))
    a.reset(4)
    np.testing.assert_array_equal(first, rollout(a, 20))  # reset restarts the episode
    a.reset(5)
    assert not np.allclose(first, rollout(a, 20))
    c = RandomVelocityExploration(24, seed=8)
    c.reset(4)
    assert not np.allclose(first, rollout(c, 20))


def test_first_action_is_uniform_by_default_like_pddm():
    policy = RandomVelocityExploration(1000, seed=0)
    policy.reset(1)
    first = policy.act()
    assert first.min() < -0.9 and first.max() > 0.9 and abs(first.mean()) < 0.1


def test_a_joint_at_a_limit_turns_back_when_a_new_velocity_is_drawn():
    config = ExplorationConfig(vel_min=0.5, vel_max=0.6, hold_steps=1, initial_action="zero")
    policy = RandomVelocityExploration(64, config, seed=2)
    policy.reset(1)
    actions = rollout(policy, 60)
    for t in range(1, len(actions) - 1):
        at_top, at_bottom = actions[t] >= 1.0, actions[t] <= -1.0
        assert np.all(actions[t + 1][at_top] < 1.0)
        assert np.all(actions[t + 1][at_bottom] > -1.0)
    assert (np.abs(actions) >= 1.0).any()  # limits were actually reached


@pytest.mark.parametrize("kwargs", [
    {"vel_min": 0.2, "vel_max": 0.1}, {"vel_min": -0.1}, {"vel_max": float("nan")},
    {"hold_steps": 0}, {"hold_steps": 1.5}, {"initial_action": "random"},
])
def test_bad_configs_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ExplorationConfig(**kwargs)


def test_bad_sizes_and_seeds_are_rejected():
    with pytest.raises(ValueError):
        RandomVelocityExploration(0)
    policy = RandomVelocityExploration(3)
    with pytest.raises(ValueError):
        policy.reset(-1)
