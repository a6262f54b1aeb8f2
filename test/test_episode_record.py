"""The experiment manager's episode record: arrays, stall reasons, and the round trip of an
episode's stream through ``StoreEpisode`` into the recorder core (the trainer's backfill)."""

from __future__ import annotations

import numpy as np
import pytest

from mbrl_ros.core.data.recorder import backfill_episode
from mbrl_ros.msg import PlannedAction
from mbrl_ros.nodes.episode_record import (
    BACKLOG_EPISODES,
    Backlog,
    EpisodeRecord,
    SeenState,
    stream_from_request,
)

S, A, G, T = 3, 2, 1, 5
DIMS = (S, A, G)


def seen(step: int, stale: bool = False, stamp: float | None = None) -> SeenState:
    return SeenState(np.full(S, float(step)), np.array([0.5 * step]),
                     0.1 * step if stamp is None else stamp, stale)


def action(step: int, value: float = 0.1) -> PlannedAction:
    msg = PlannedAction(episode_id=7, step=step, action=[value * step, -value * step])
    msg.stats.planner, msg.stats.model_version = "mppi", 3
    return msg


def full_record(skip_states=(), skip_actions=(), stale=()) -> EpisodeRecord:
    record = EpisodeRecord(7, T)
    for k in range(T + 1):
        if k not in skip_states:
            record.add_state(k, seen(k, stale=k in stale), now=float(k))
        if k < T and k not in skip_actions:
            record.add_action(action(k), now=float(k))
    return record


def recorder_args() -> dict:
    def reward(next_state, action, goal):
        return next_state[:, 0].astype(np.float32), np.zeros(len(next_state), dtype=bool)

    return dict(state_dim=S, action_dim=A, goal_dim=G, default_length=T, reward_fn=reward)


def test_a_republished_state_keeps_its_first_flags_and_the_last_state_ends_the_episode():
    record = EpisodeRecord(7, T)
    record.add_state(2, seen(2), now=1.0)
    record.add_state(2, seen(2, stale=True), now=2.0)  # same stamp, flagged stale later
    assert not record.states[2].stale and record.last_state == 1.0
    record.add_state(2, seen(2, stamp=9.0), now=3.0)  # measured anew: replaces it
    assert record.states[2].stamp == 9.0
    assert not record.done.is_set()
    record.add_state(T, seen(T), now=4.0)
    assert record.done.is_set()


def test_stall_names_the_silent_part_of_the_loop():
    record = EpisodeRecord(7, T, started=10.0)
    assert record.stall(now=11.0, stall_s=3.0) == ""
    record.last_action = 13.5
    assert "no fresh task state for 4.0 s" in record.stall(now=14.0, stall_s=3.0)
    record.last_state = 16.5
    assert "no command for 3.5 s" in record.stall(now=17.0, stall_s=3.0)
    record.problem = "the simulator restarted"
    assert record.stall(now=11.0, stall_s=3.0) == "the simulator restarted"


def test_arrays_repeat_the_entry_before_a_gap():
    record = full_record(skip_states=(0, 3), skip_actions=(0, 2))
    assert record.missing() == ([0, 3], [0, 2])
    states, actions = record.arrays(S, A)
    assert states[:, 0].tolist() == [1, 1, 2, 2, 4, 5]  # step 0: the earliest state seen
    assert actions[:, 0].tolist() == pytest.approx([0.0, 0.1, 0.1, 0.3, 0.4])


def test_transitions_seen_needs_two_fresh_states_and_an_action():
    assert full_record().transitions_seen() == T
    # state 2 stale: transitions 1 and 2 go; action 4 missing: transition 4 goes
    assert full_record(stale=(2,), skip_actions=(4,)).transitions_seen() == 2


def test_the_stream_round_trip_stores_what_the_record_holds_except_held_steps():
    record = full_record(stale=(2,))
    request = record.store_request("baoding")
    states, actions = stream_from_request(request, DIMS, skip_stale=True)
    assert [s.step for s in states] == [0, 1, 3, 4, 5] and len(actions) == T
    episode, held = backfill_episode(recorder_args(), 7, T, states, actions, held={0})
    assert held == 1  # transition 0; 1 and 2 have no fresh state 2
    assert episode is not None and episode.step.tolist() == [3, 4]
    assert episode.meta["end"] == "backfilled" and episode.meta["model_version"] == 3
    np.testing.assert_allclose(episode.next_state[:, 0], [4, 5])
    np.testing.assert_allclose(episode.action[:, 0], [0.3, 0.4])
    np.testing.assert_allclose(episode.reward, [4, 5])  # scored on the reached state
    # Everything held: nothing to store.
    assert backfill_episode(recorder_args(), 7, T, states, actions, held={0, 3, 4}) == (None, 3)


@pytest.mark.parametrize(("change", "message"), [
    ({"states": [0.0] * 4}, "states has 4 values"),
    ({"policies": ["mppi"]}, "policies has 1 values"),
    ({"episode_length": 0}, "episode_length"),
    ({"actions": [2.0] * (T * A)}, "outside"),
    ({"actions": [float("nan")] * (T * A)}, "outside"),
])
def test_a_request_that_does_not_fit_is_refused(change, message):
    request = full_record().store_request("baoding")
    for key, value in change.items():
        setattr(request, key, value)
    with pytest.raises(ValueError, match=message):
        stream_from_request(request, DIMS, skip_stale=True)


def test_the_backlog_drops_the_oldest_and_counts_it():
    backlog = Backlog()
    for k in range(BACKLOG_EPISODES + 2):
        backlog.add(k)
    assert len(backlog) == BACKLOG_EPISODES and backlog.dropped == 2
    assert backlog.requests[0] == 2
