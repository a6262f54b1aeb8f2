"""When a control step's task state is complete: joint and object readings -> step states.

The estimator node's logic without ROS (docs/node_graph.md, steps 1-3). An episode starts
with a schedule (:meth:`StepSynchronizer.start_schedule`, an :class:`EpisodeClock`) whose
``t0`` is its first observation; a reading stamped ``t`` belongs to step
``round((t - t0) / period)``; states 0..T are emitted with the schedule's goal rows and
nothing after T. Readings that arrived before their schedule are kept (``replay_depth``)
and fused again when it comes: the first observation races the schedule. Without any
schedule, episode 0 starts at the first joint reading with the default goals, open-ended.

Per step the objects come first, then the joints. A step's state is emitted when its joint
reading is in and the objects for it are fused. If they are not, the caller waits
``object_wait_s`` (:attr:`SyncResult.wait`) and then calls :meth:`wait_over`: the filters'
prediction bridges the gap (a dropout). The same joint stamp again repeats the same state.
:meth:`check_stale` (on ROS time) repeats the last state flagged stale when the joint
readings stop. Bad or late readings are dropped with a call to ``problem(kind, message)``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from mbrl_ros.core.estimation.episode_clock import EpisodeClock
from mbrl_ros.core.estimation.state_assembly import TaskStateAssembler

NS_PER_S = 1_000_000_000

ProblemFn = Callable[[str, str], None]
InfoFn = Callable[[str], None]


@dataclass(frozen=True)
class ObjectReading:
    """One tracker reading of some objects (world frame, stamp in ns)."""

    stamp_ns: int
    names: tuple[str, ...]
    positions: np.ndarray
    quats: np.ndarray  # w, x, y, z
    linvels: np.ndarray | None = None
    angvels: np.ndarray | None = None


@dataclass(frozen=True)
class StepState:
    """The task state of one control step, as the estimator publishes it."""

    episode_id: int
    step: int
    stamp_ns: int
    state: np.ndarray
    goal: np.ndarray
    stale: bool
    age: float  # s since the oldest object reading fused into it


@dataclass(frozen=True)
class Emission:
    """A state to publish and when its newest input was received (for the latency)."""

    state: StepState
    received: float


@dataclass
class SyncResult:
    """What a call produced: states to publish in order, and whether to start the
    ``object_wait_s`` wait for a step's objects (then call :meth:`wait_over`)."""

    emit: list[Emission] = field(default_factory=list)
    wait: bool = False


@dataclass(frozen=True)
class SyncLimits:
    """The limits an operator may change while running."""

    stale_timeout_s: float = 0.5  # ROS s: older readings make a state stale
    max_measurement_age_s: float = 1.0  # object readings older than the newest joint: late


@dataclass
class _PendingJoint:
    stamp_ns: int
    q: np.ndarray
    received: float


COUNTS = ("published", "republished", "stale_published", "dropouts", "late_objects",
          "out_of_order", "duplicate_objects", "before_episode", "after_episode", "same_step",
          "no_objects")


class StepSynchronizer:
    """Turns time-stamped joint and object readings into one task state per step."""

    def __init__(self, assembler: TaskStateAssembler, period_s: float, default_goals: np.ndarray,
                 object_wait_s: float = 0.02, limits: SyncLimits | None = None,
                 problem: ProblemFn | None = None, info: InfoFn | None = None,
                 replay_depth: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        if period_s <= 0 or object_wait_s < 0 or replay_depth < 1:
            raise ValueError(f"need period_s > 0, object_wait_s >= 0, replay_depth >= 1; got "
                             f"{period_s}, {object_wait_s}, {replay_depth}")
        self.assembler = assembler
        self.period_s = float(period_s)
        self.period_ns = round(self.period_s * NS_PER_S)
        self.default_goals = np.asarray(default_goals, dtype=np.float64)
        self.object_wait_s = float(object_wait_s)
        self.limits = limits or SyncLimits()
        self._problem = problem or (lambda kind, message: None)
        self._info = info or (lambda message: None)
        self._clock = clock
        self.episode: EpisodeClock | None = None  # None: no schedule and no joint state yet
        self.scheduled = False
        self._time_base_ns: int | None = None  # filters run on seconds since this stamp
        self._joints_seen: deque[tuple[int, np.ndarray]] = deque(maxlen=replay_depth)
        self._objects_seen: deque[ObjectReading] = deque(maxlen=replay_depth)
        self._pending: _PendingJoint | None = None
        # Stamp of the joint reading fused last: an object reading after it is this step's.
        self._fused_joint_ns: int | None = None
        self.newest_object_ns: int | None = None
        self.newest_joint_ns: int | None = None
        self.last: StepState | None = None
        self.last_step = -1
        self.stale = False  # the joint readings stopped (check_stale)
        self.counts = dict.fromkeys(COUNTS, 0)
        self.last_trouble = -1e9  # clock() of the last dropout or refused reading

    # ----- state ------------------------------------------------------------------------
    @property
    def episode_id(self) -> int:
        return self.episode.episode_id if self.episode is not None else 0

    @property
    def waiting(self) -> bool:
        """A joint reading waits for its step's objects."""
        return self._pending is not None

    def _seconds(self, stamp_ns: int) -> float:
        if self._time_base_ns is None:
            self._time_base_ns = stamp_ns
        return (stamp_ns - self._time_base_ns) / NS_PER_S

    def _trouble(self, kind: str) -> None:
        self.counts[kind] += 1
        self.last_trouble = self._clock()

    # ----- inputs -----------------------------------------------------------------------
    def add_objects(self, reading: ObjectReading) -> SyncResult:
        """An object reading: fused, and the waiting step's state emitted if now complete."""
        out = SyncResult()
        self._objects_seen.append(reading)
        self._fuse(reading)
        if self._pending is not None and self._objects_ready(self._pending.stamp_ns):
            self._flush_pending(out)
        return out

    def add_joints(self, stamp_ns: int, q: np.ndarray, received: float | None = None
                   ) -> SyncResult:
        """A joint reading (positions in the task's joint order)."""
        received = self._clock() if received is None else received
        out = SyncResult()
        self.newest_joint_ns = max(stamp_ns, self.newest_joint_ns or stamp_ns)
        self.stale = False
        last = self.last
        if last is not None and last.stamp_ns == stamp_ns:
            self.counts["republished"] += 1
            out.emit.append(Emission(last, received))  # lockstep re-publish: the same state
            return out
        if self._pending is not None:
            if self._pending.stamp_ns == stamp_ns:
                return out  # still waiting for this step's objects
            self._flush_pending(out, dropout=True)  # the next step came first: no objects
        self._joints_seen.append((stamp_ns, q))
        self._handle_joint(stamp_ns, q, received, may_wait=True, out=out)
        return out

    def wait_over(self) -> SyncResult:
        """The ``object_wait_s`` wait ended: the waiting step is bridged by prediction."""
        out = SyncResult()
        if self._pending is not None:
            self._flush_pending(out, dropout=True)
        return out

    def start_schedule(self, clock: EpisodeClock) -> SyncResult:
        """A goal schedule. A new episode resets the filters and replays what arrived for
        it; the same schedule again is ignored, and a shorter one for the same episode
        (ended early, e.g. a drop) only moves its end."""
        out = SyncResult()
        old = self.episode
        if (self.scheduled and old is not None and old.episode_id == clock.episode_id
                and old.t0_ns == clock.t0_ns):
            if clock.episode_length != old.episode_length:
                self.episode = clock
                self._info(f"episode {clock.episode_id} now ends at step "
                           f"{clock.episode_length or 'open-ended'}")
            return out
        self.episode, self.scheduled = clock, True
        self.assembler.reset()
        self._pending = None
        self.newest_object_ns = self._fused_joint_ns = None
        self.last, self.last_step = None, -1
        self._info(f"episode {clock.episode_id}: t0 {clock.t0_ns / NS_PER_S:.3f} s, "
                   f"{clock.episode_length or 'open-ended'} steps, {clock.goals.shape[0]} "
                   f"goal rows")
        self._replay(clock.t0_ns, out)
        return out

    def reset_filters(self) -> None:
        """Forget the objects' filters (a reset request), keeping the episode."""
        self.assembler.reset()
        self._pending = None
        self.newest_object_ns = None

    def check_stale(self, now_ns: int) -> SyncResult:
        """On ROS time: when the joint readings stopped, repeat the last state flagged stale
        (not after the last state of a scheduled episode)."""
        out = SyncResult()
        last, newest = self.last, self.newest_joint_ns
        if last is None or newest is None:
            return out
        if now_ns - newest <= round(self.limits.stale_timeout_s * NS_PER_S):
            return out
        self.stale = True
        if self.episode is not None and self.episode.is_last(self.last_step):
            return out
        oldest = min(newest, self.newest_object_ns if self.newest_object_ns is not None
                     else newest)
        self.counts["stale_published"] += 1
        out.emit.append(Emission(replace(last, stale=True, age=(now_ns - oldest) / NS_PER_S),
                                 self._clock()))
        return out

    # ----- the steps --------------------------------------------------------------------
    def _fuse(self, reading: ObjectReading) -> None:
        stamp = reading.stamp_ns
        if self.episode is not None and self.scheduled and stamp < self.episode.t0_ns:
            self.counts["before_episode"] += 1
            return
        max_age_ns = round(self.limits.max_measurement_age_s * NS_PER_S)
        if self.newest_joint_ns is not None and stamp < self.newest_joint_ns - max_age_ns:
            self._trouble("late_objects")
            self._problem("late_object", f"object reading {stamp} ns is older than "
                          f"{self.limits.max_measurement_age_s} s; dropped")
            return
        if self.newest_object_ns is not None and stamp <= self.newest_object_ns:
            if stamp == self.newest_object_ns:
                self.counts["duplicate_objects"] += 1  # lockstep re-publish of a step
            else:
                self._trouble("out_of_order")
                self._problem("out_of_order_object", f"object reading {stamp} ns is older "
                              f"than the newest fused; dropped")
            return
        t = self._seconds(stamp)
        try:
            for i, name in enumerate(reading.names):
                self.assembler.add_object(
                    name, reading.positions[i], reading.quats[i], t,
                    None if reading.linvels is None else reading.linvels[i],
                    None if reading.angvels is None else reading.angvels[i])
        except ValueError as exc:
            self._problem("object_states", f"{exc}; reading dropped")
            return
        self.newest_object_ns = stamp

    def _handle_joint(self, stamp: int, q: np.ndarray, received: float, may_wait: bool,
                      out: SyncResult) -> None:
        if self.episode is None:
            self.episode = EpisodeClock(stamp, self.period_ns, 0, 0, self.default_goals)
            self._info("no goal schedule: episode 0 starts at this joint state")
        clock = self.episode
        if stamp < clock.t0_ns:
            self.counts["before_episode"] += 1
            return
        if clock.is_over(stamp):
            self.counts["after_episode"] += 1
            return
        step = clock.step_of(stamp)
        if step <= self.last_step:
            if step == self.last_step:
                self.counts["same_step"] += 1
            else:
                self._trouble("out_of_order")
                self._problem("out_of_order_joint", f"joint state of step {step} after step "
                              f"{self.last_step}; dropped")
            return
        pending = _PendingJoint(stamp, q, received)
        if self._objects_ready(stamp) or not may_wait:
            self._assemble(pending, out)
        elif self.object_wait_s <= 0.0:
            self._assemble(pending, out, dropout=True)
        else:
            self._pending = pending
            out.wait = True

    def _objects_ready(self, stamp: int) -> bool:
        """A reading for the joint state stamped ``stamp`` is fused: one stamped at or after
        it, or (a tracker on its own clock) after the joint state fused last. A late reading
        of the previous step does not count: that step was already bridged."""
        newest = self.newest_object_ns
        if newest is None:
            return False
        return newest >= stamp or (self._fused_joint_ns is not None
                                   and newest > self._fused_joint_ns)

    def _flush_pending(self, out: SyncResult, dropout: bool = False) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._assemble(pending, out, dropout=dropout)

    def _replay(self, since_ns: int, out: SyncResult) -> None:
        """Fuse again what arrived before the schedule: objects and joints from ``since_ns``
        in stamp order (objects first at equal stamps); the newest joint state may wait."""
        events: list[tuple[int, int, object]] = [
            (r.stamp_ns, 0, r) for r in self._objects_seen if r.stamp_ns >= since_ns]
        joints = [(s, 1, q) for s, q in self._joints_seen if s >= since_ns]
        events += joints
        events.sort(key=lambda e: (e[0], e[1]))
        newest_joint = max((s for s, _, _ in joints), default=None)
        # the new episode's time line (a restarted simulator's clock may start over)
        self.newest_joint_ns = newest_joint
        now = self._clock()
        for stamp, kind, item in events:
            if kind == 0:
                assert isinstance(item, ObjectReading)
                self._fuse(item)
            else:
                assert isinstance(item, np.ndarray)
                self._handle_joint(stamp, item, now, may_wait=stamp == newest_joint, out=out)

    def _assemble(self, pending: _PendingJoint, out: SyncResult, dropout: bool = False
                  ) -> None:
        clock = self.episode
        assert clock is not None
        step = clock.step_of(pending.stamp_ns)
        self._fused_joint_ns = pending.stamp_ns
        if not self.assembler.ready():
            self._trouble("no_objects")
            self._problem("no_objects", f"no reading yet of every object for step {step}; "
                          f"state not published")
            return
        t = self._seconds(pending.stamp_ns)
        try:
            assembled = self.assembler.assemble(pending.q, t, clock.goal_at(step))
        except ValueError as exc:
            self._problem("assembly", f"{exc}; state of step {step} not published")
            return
        if dropout:
            self._trouble("dropouts")
        age = max(0.0, t - assembled.oldest_object_time)
        state = StepState(clock.episode_id, step, pending.stamp_ns, assembled.state,
                          assembled.goal, age > self.limits.stale_timeout_s, age)
        self.last, self.last_step = state, step
        self.counts["published"] += 1
        out.emit.append(Emission(state, pending.received))
        if clock.is_last(step):
            self._info(f"episode {clock.episode_id} complete: state {step} sent")
