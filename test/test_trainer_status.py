"""The trainer's status fields the experiment manager relies on: one typed definition."""

from __future__ import annotations

import pytest

from mbrl_ros.nodes.trainer_status import TrainerLoopStatus


def test_the_fields_go_through_the_status_text_and_back():
    status = TrainerLoopStatus(job_id=3, open_episode_id=-1, max_episode_id=12,
                               unsaved_episodes=0, recorder_states=250, action_publishers=1)
    text = {k: str(v) for k, v in status.values().items()}  # as GetStatus.values carries it
    assert TrainerLoopStatus.from_values({**text, "other": "ignored"}) == status


def test_a_missing_or_malformed_field_fails_loudly():
    text = {k: "1" for k in TrainerLoopStatus(0, 0, 0, 0, 0, 0).values()}
    del text["max_episode_id"]
    with pytest.raises(ValueError, match="no 'max_episode_id'"):
        TrainerLoopStatus.from_values(text)
    with pytest.raises(ValueError, match="job_id='two'"):
        TrainerLoopStatus.from_values({**text, "max_episode_id": "1", "job_id": "two"})
