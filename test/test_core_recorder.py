"""TransitionRecorder: pairing by (episode, step), duplicates, gaps, episode boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.data.recorder import TransitionRecorder, task_reward_fn
from mbrl_ros.core.tasks import BaodingTask

S, A, G = 3, 2, 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(episode: int, step: int) -> np.ndarray:
    return np.array([episode, step, 0.5 * step])


def action(episode: int, step: int) -> np.ndarray:
    return np.array([0.1 * step, -0.01 * episode])


def reward_fn(next_state, act, goal):
    """Reward = goal - next_state[1]; done when next_state[1] >= 5."""
    return goal[:, 0] - next_state[:, 1], next_state[:, 1] >= 5


def make(length: int = 100, **kwargs) -> TransitionRecorder:
    return TransitionRecorder(S, A, G, length, reward_fn=reward_fn, **kwargs)


def feed(rec: TransitionRecorder, episode: int, steps, stamp0: float = 0.0, actions=True,
         policy: str = "mppi"):
    """States (and actions) of ``steps`` in protocol order; returns the finished episodes."""
    out = []
    for k in steps:
        out += rec.add_state(episode, k, state(episode, k), stamp0 + 0.1 * k, goal=[10.0])
        if actions:
            out += rec.add_action(episode, k, action(episode, k), policy, 3)
    return out


def test_pairs_state_action_next_state_and_stores_at_the_last_state():
    rec = make()
    rec.set_episode_length(7, 3)
    assert feed(rec, 7, range(3)) == []
    (ep,) = rec.add_state(7, 3, state(7, 3), 0.3, goal=[10.0])
    np.testing.assert_allclose(ep.state, [state(7, k) for k in range(3)])
    np.testing.assert_allclose(ep.next_state, [state(7, k) for k in range(1, 4)])
    np.testing.assert_allclose(ep.action, [action(7, k) for k in range(3)], rtol=1e-6)
    np.testing.assert_allclose(ep.time, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(ep.reward, [9.0, 8.0, 7.0])  # on next_state, its goal
    assert not ep.done.any()
    assert ep.meta["episode_id"] == 7 and ep.meta["policy"] == "mppi"
    assert ep.meta["model_version"] == 3 and not ep.meta["cut_short"]
    assert ep.state.dtype == np.float32 and len(ep) == 3


def test_duplicate_states_are_ignored_and_the_newest_action_counts():
    rec = make()
    rec.set_episode_length(1, 2)
    rec.add_state(1, 0, state(1, 0), 0.0, goal=[0.0])
    rec.add_action(1, 0, [0.9, 0.9], "exploration")
    rec.add_state(1, 0, state(1, 0) + 100, 0.0, goal=[0.0])  # same stamp: a re-publish
    rec.add_action(1, 0, [0.2, 0.2], "exploration")  # the re-sent / newer command
    rec.add_state(1, 1, state(1, 1), 0.1, goal=[0.0])
    rec.add_action(1, 1, [0.3, 0.3], "exploration")
    (ep,) = rec.add_state(1, 2, state(1, 2), 0.2, goal=[0.0])
    assert rec.add_state(1, 2, state(1, 2), 0.2, goal=[0.0]) == []  # re-publish after the end
    np.testing.assert_allclose(ep.state[0], state(1, 0))
    np.testing.assert_allclose(ep.action, [[0.2, 0.2], [0.3, 0.3]], rtol=1e-6)
    assert rec.counts["duplicate_states"] == 2 and rec.counts["replaced_actions"] == 1
    assert rec.counts["transitions"] == 2


def test_gaps_skip_only_the_transitions_they_break():
    clock = FakeClock()
    rec = make(action_grace_s=0.5, clock=clock)
    rec.set_episode_length(2, 6)
    for k in range(6):
        if k != 2:  # state 2 lost: transitions 1 and 2 are broken
            rec.add_state(2, k, state(2, k), 0.1 * k, goal=[0.0])
        if k != 4:  # action 4 lost: transition 4 is broken
            rec.add_action(2, k, action(2, k))
    assert rec.add_state(2, 6, state(2, 6), 0.6, goal=[0.0]) == []  # action 4 may come late
    clock.now = 0.6
    (ep,) = rec.poll()
    np.testing.assert_allclose(ep.state[:, 1], [0, 3, 5])
    np.testing.assert_allclose(ep.next_state[:, 1], [1, 4, 6])
    assert ep.step.tolist() == [0, 3, 5]
    assert rec.counts["skipped_missing_state"] == 2
    assert rec.counts["skipped_missing_action"] == 1
    assert ep.meta["skipped_transitions"] == 3


def test_never_pairs_across_episodes_and_keeps_a_cut_short_episode():
    rec = make()
    feed(rec, 1, range(3))  # episode 1, states 0..2 with actions 0..2
    (ep1,) = rec.add_state(2, 0, state(2, 0), 5.0, goal=[0.0])  # another episode: cut short
    assert len(ep1) == 2 and ep1.meta["cut_short"] and ep1.meta["episode_id"] == 1
    np.testing.assert_allclose(ep1.next_state[-1], state(1, 2))  # not episode 2's state
    # A cut-short episode without a single transition is dropped.
    assert rec.add_action(2, 0, action(2, 0)) == []
    assert rec.add_state(3, 0, state(3, 0), 6.0, goal=[0.0]) == []
    assert rec.counts["episodes"] == 1 and rec.counts["cut_short_episodes"] == 1


def test_a_late_state_of_the_previous_episode_does_not_cut_the_current_one():
    rec = make()
    rec.set_episode_length(1, 2)
    feed(rec, 1, range(2))
    assert len(rec.add_state(1, 2, state(1, 2), 0.2, goal=[0.0])) == 1
    feed(rec, 2, range(2), stamp0=1.0)
    assert rec.add_state(1, 1, state(1, 1), 0.1, goal=[0.0]) == []  # reordered, old stamp
    assert rec.add_action(1, 1, action(1, 1)) == []
    assert rec.open_episode == (2, 0, 2)
    assert rec.counts["late_states"] == 1 and rec.counts["late_actions"] == 1


def test_same_episode_id_restarted_with_new_stamps_is_a_new_recording():
    rec = make()
    feed(rec, 4, range(5))
    (first,) = rec.add_state(4, 0, state(4, 0), 10.0, goal=[0.0])  # reset, same id
    assert len(first) == 4 and first.meta["end"] == "restarted"
    assert rec.open_episode == (4, 0, 1)


def test_the_last_action_may_arrive_after_the_last_state():
    clock = FakeClock()
    rec = make(action_grace_s=0.5, clock=clock)
    rec.set_episode_length(1, 2)
    rec.add_state(1, 0, state(1, 0), 0.0, goal=[0.0])
    rec.add_action(1, 0, action(1, 0))
    rec.add_state(1, 1, state(1, 1), 0.1, goal=[0.0])
    assert rec.add_state(1, 2, state(1, 2), 0.2, goal=[0.0]) == []  # action 1 not in yet
    (ep,) = rec.add_action(1, 1, action(1, 1))
    assert len(ep) == 2
    # Without it, poll() stores the episode after the grace period.
    rec.set_episode_length(2, 2)
    feed(rec, 2, range(2), stamp0=1.0, actions=False)
    rec.add_action(2, 0, action(2, 0))
    rec.add_state(2, 2, state(2, 2), 1.2, goal=[0.0])
    clock.now = 0.4
    assert rec.poll() == []
    clock.now = 0.6
    (ep2,) = rec.poll()
    assert len(ep2) == 1 and not ep2.meta["cut_short"]


def test_open_ended_episodes_are_stored_in_stretches_of_the_default_length():
    rec = make(length=4)
    out = feed(rec, 0, range(10))
    assert [(e.meta["first_step"], e.meta["last_step"]) for e in out] == [(0, 4), (4, 8)]
    (rest,) = rec.flush()
    assert (rest.meta["first_step"], rest.meta["last_step"]) == (8, 9)
    assert rec.counts["transitions"] == 9  # every executed step exactly once


def test_actions_before_the_first_state_are_kept_and_bad_input_is_refused():
    rec = make()
    rec.set_episode_length(5, 1)
    rec.add_action(5, 0, action(5, 0), "explore")
    rec.add_state(5, 0, state(5, 0), 0.0, goal=[0.0])
    (ep,) = rec.add_state(5, 1, state(5, 1), 0.1, goal=[0.0])
    assert ep.meta["policy"] == "explore"
    with pytest.raises(ValueError, match="non-finite"):
        rec.add_state(6, 0, [np.nan, 0, 0], 0.0, goal=[0.0])
    with pytest.raises(ValueError, match="expected 3"):
        rec.add_state(6, 0, [0.0, 0.0], 0.0, goal=[0.0])
    with pytest.raises(ValueError, match="expected 2"):
        rec.add_action(6, 0, [0.0])
    assert rec.open_episode is None  # nothing half-recorded from the refused input


def test_task_reward_and_dataset_append(tmp_path):
    task = BaodingTask(episode_length=3)
    rec = TransitionRecorder(task.state_dim, task.action_dim, task.goal_dim, 3,
                             reward_fn=task_reward_fn(task))
    rng = np.random.default_rng(0)
    goals = task.episode_goals(0, 4).numpy()
    states = rng.normal(0.0, 0.05, (4, task.state_dim)) + np.r_[np.zeros(24), [0, 0, 0.15] * 4,
                                                                 np.zeros(4)]
    actions = rng.uniform(-1, 1, (3, task.action_dim))
    out = []
    for k in range(4):
        out += rec.add_state(1, k, states[k], 0.1 * k, goal=goals[k])
        if k < 3:
            out += rec.add_action(1, k, actions[k], "exploration")
    (ep,) = out
    expected, dropped = task.reward(torch.as_tensor(states[1:], dtype=torch.float32),
                                    torch.as_tensor(actions, dtype=torch.float32),
                                    torch.as_tensor(goals[1:]))
    np.testing.assert_allclose(ep.reward, expected.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(ep.done, dropped.numpy())
    dataset = EpisodeDataset(tmp_path)
    dataset.append(ep)
    assert EpisodeDataset(tmp_path).num_transitions == 3
    assert dataset.episode_meta(0)["policy"] == "exploration"


def test_an_episode_ended_early_by_a_drop_is_stored_when_its_length_arrives():
    """The experiment manager shortens the schedule at a drop (state 4 of 10): the
    recorder, which already has states 0..4 and actions 0..3, stores them at once."""
    rec = make()
    rec.set_episode_length(3, 10)
    assert feed(rec, 3, range(4)) == []
    assert rec.add_state(3, 4, state(3, 4), 0.4, goal=[10.0]) == []
    (ep,) = rec.set_episode_length(3, 4)
    assert len(ep) == 4 and ep.meta["last_step"] == 4 and ep.meta["end"] == "complete"
    # what the planner sent for the dropped state is not a transition
    assert rec.add_action(3, 4, action(3, 4), "mppi", 3) == [] and rec.open_episode is None
    # nor is the state it led to (sent before the shorter schedule reached the estimator)
    assert rec.add_state(3, 5, state(3, 5), 0.5, goal=[10.0]) == []
    assert rec.add_state(3, 6, state(3, 6), 0.6, goal=[10.0]) == []
    assert rec.open_episode is None and rec.counts["states_after_end"] == 2


def test_a_length_learnt_after_the_last_state_still_ends_the_episode():
    # A recorder that starts mid-episode may get the last states before the (latched)
    # schedule: the episode looks open-ended until the length arrives, then it ends.
    clock = FakeClock()
    rec = make(length=100, clock=clock, action_grace_s=0.5)
    assert feed(rec, 6, range(15, 19)) == []
    (ep,) = rec.set_episode_length(6, 18)  # every action is in: stored at once
    assert len(ep) == 3 and ep.meta["last_step"] == 18 and not ep.meta["cut_short"]
    assert rec.open_episode is None
    # A missing action: complete, but stored only after the action's grace period.
    feed(rec, 8, range(0, 3))
    rec.add_state(8, 3, state(8, 3), 0.3, goal=[10.0])
    rec.add_state(8, 4, state(8, 4), 0.4, goal=[10.0])  # no action for step 3
    assert rec.set_episode_length(8, 4) == [] and rec.open_episode == (8, 0, 5)
    clock.now = 1.0
    (ep,) = rec.poll()
    assert len(ep) == 3 and ep.meta["last_step"] == 3
    # Only the very last state: nothing to store, and nothing left open.
    assert rec.add_state(7, 20, state(7, 20), 9.0, goal=[10.0]) == []
    rec.set_episode_length(7, 20)
    clock.now = 2.0
    assert rec.poll() == [] and rec.open_episode is None
