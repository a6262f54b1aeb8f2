"""The estimator's step synchronizer without ROS: which step a reading is, when a step's
state is complete, dropouts, late and out-of-order readings, replay, staleness."""

from __future__ import annotations

import numpy as np
import pytest

from mbrl_ros.core.estimation.episode_clock import EpisodeClock
from mbrl_ros.core.estimation.state_assembly import TaskStateAssembler
from mbrl_ros.core.estimation.step_sync import (
    NS_PER_S,
    ObjectReading,
    StepSynchronizer,
    SyncLimits,
)
from mbrl_ros.core.tasks import make_task

PERIOD_NS = NS_PER_S // 10
T0 = 5 * NS_PER_S


class Recorder:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.now = 0.0

    def problem(self, kind: str, message: str) -> None:
        self.problems.append((kind, message))

    def clock(self) -> float:
        return self.now


@pytest.fixture()
def setup():
    task = make_task("baoding")
    rec = Recorder()
    sync = StepSynchronizer(TaskStateAssembler(task), 0.1,
                            task.episode_goals(0).double().numpy(), object_wait_s=0.02,
                            problem=rec.problem, clock=rec.clock)
    return task, sync, rec


def objects(stamp_ns: int, x: float = 0.0) -> ObjectReading:
    pos = np.array([[x, 0.0, 0.15], [0.03, 0.0, 0.15]])
    quat = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    return ObjectReading(stamp_ns, ("ball1", "ball2"), pos, quat)


def joints(k: int) -> np.ndarray:
    return np.full(24, 0.01 * k)


def schedule(task, episode_id: int = 3, length: int = 5) -> EpisodeClock:
    goals = task.episode_goals(0, length + 1).double().numpy()
    return EpisodeClock.from_schedule(T0, 0.1, episode_id, length, goals.ravel(),
                                      task.goal_dim)


def step(sync, k: int):
    """The objects, then the joints, of step k."""
    stamp = T0 + k * PERIOD_NS
    assert sync.add_objects(objects(stamp, 0.001 * k)).emit == []
    return sync.add_joints(stamp, joints(k), received=0.0)


def test_one_state_per_step_with_the_schedules_goal_and_nothing_after_its_end(setup):
    task, sync, rec = setup
    clock = schedule(task)
    sync.start_schedule(clock)
    for k in range(6):
        out = step(sync, k)
        (emitted,) = out.emit
        s = emitted.state
        assert (s.episode_id, s.step, s.stamp_ns) == (3, k, T0 + k * PERIOD_NS)
        np.testing.assert_allclose(s.goal, clock.goal_at(k))
        np.testing.assert_allclose(s.state[task.layout.slice("joints")], joints(k))
        assert not s.stale and not out.wait
    assert step(sync, 6).emit == []  # after the episode's last state (step 5)
    assert sync.counts["after_episode"] == 1 and sync.counts["published"] == 6
    assert rec.problems == []


def test_a_joint_reading_waits_for_its_objects_then_a_dropout_is_bridged(setup):
    task, sync, _rec = setup
    sync.start_schedule(schedule(task))
    step(sync, 0)
    stamp = T0 + PERIOD_NS
    out = sync.add_joints(stamp, joints(1))
    assert out.wait and out.emit == [] and sync.waiting
    out = sync.add_objects(objects(stamp))  # the objects came: step 1 is complete
    assert [e.state.step for e in out.emit] == [1] and not sync.waiting
    stamp = T0 + 2 * PERIOD_NS
    assert sync.add_joints(stamp, joints(2)).wait
    out = sync.wait_over()  # they did not: the filters predict
    assert [e.state.step for e in out.emit] == [2]
    assert sync.counts["dropouts"] == 1
    # the next step's joints before the objects of a waiting step: that one is bridged too
    assert sync.add_joints(T0 + 3 * PERIOD_NS, joints(3)).wait
    out = sync.add_joints(T0 + 4 * PERIOD_NS, joints(4))
    assert [e.state.step for e in out.emit] == [3] and out.wait
    assert sync.counts["dropouts"] == 2


def test_readings_before_their_schedule_are_replayed_when_it_comes(setup):
    task, sync, _rec = setup
    sync.add_objects(objects(T0))
    first = sync.add_joints(T0, joints(0))  # no schedule yet: episode 0, default goals
    assert [e.state.episode_id for e in first.emit] == [0]
    out = sync.start_schedule(schedule(task, episode_id=7))
    assert [(e.state.episode_id, e.state.step) for e in out.emit] == [(7, 0)]
    assert sync.start_schedule(schedule(task, episode_id=7)).emit == []  # the same again


def test_a_shortened_schedule_moves_the_end_and_keeps_the_filters(setup):
    task, sync, _rec = setup
    sync.start_schedule(schedule(task, length=5))
    for k in range(3):
        step(sync, k)
    sync.start_schedule(schedule(task, length=3))  # a drop at step 3
    assert sync.episode is not None and sync.episode.episode_length == 3
    assert [e.state.step for e in step(sync, 3).emit] == [3]
    assert step(sync, 4).emit == []


def test_the_same_joint_stamp_repeats_the_state_and_bad_order_is_refused(setup):
    task, sync, rec = setup
    sync.start_schedule(schedule(task))
    (a,) = step(sync, 0).emit
    (b,) = sync.add_joints(T0, joints(0)).emit  # lockstep re-publish
    assert b.state is a.state and sync.counts["republished"] == 1
    step(sync, 1)
    sync.add_objects(objects(T0 + 2 * PERIOD_NS))
    sync.add_objects(objects(T0 + PERIOD_NS + 1))  # older than the newest fused
    assert rec.problems[-1][0] == "out_of_order_object"
    sync.limits = SyncLimits(max_measurement_age_s=0.05)
    sync.add_joints(T0 + 3 * PERIOD_NS, joints(3))
    sync.add_objects(objects(T0 + 2 * PERIOD_NS + 5))
    assert rec.problems[-1][0] == "late_object"
    assert sync.counts["late_objects"] == 1 and sync.counts["out_of_order"] == 1


def test_a_state_without_every_object_is_not_emitted(setup):
    task, sync, rec = setup
    sync.start_schedule(schedule(task))
    assert sync.add_joints(T0, joints(0)).wait
    assert sync.wait_over().emit == []
    assert rec.problems[-1][0] == "no_objects"


def test_stale_when_the_joints_stop_but_not_after_the_episodes_last_state(setup):
    task, sync, _rec = setup
    sync.start_schedule(schedule(task, length=5))
    step(sync, 0)
    quiet = T0 + round(0.4 * NS_PER_S)
    assert sync.check_stale(quiet).emit == [] and not sync.stale
    later = T0 + round(0.6 * NS_PER_S)
    (e,) = sync.check_stale(later).emit
    assert e.state.stale and e.state.step == 0 and e.state.age == pytest.approx(0.6)
    assert sync.stale and sync.last is not None and not sync.last.stale
    for k in range(1, 6):
        step(sync, k)
    assert not sync.stale
    assert sync.check_stale(T0 + 50 * PERIOD_NS).emit == []  # the episode is over
    assert sync.stale


def test_bad_settings_are_refused(setup):
    task, _, _ = setup
    with pytest.raises(ValueError, match="period_s"):
        StepSynchronizer(TaskStateAssembler(task), 0.0, np.zeros((1, task.goal_dim)))
