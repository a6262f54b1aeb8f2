"""``state_estimator``: joint states + tracked objects -> the task state, once per control step.

Follows the episode protocol of docs/node_graph.md (steps 1-3). A ``GoalSchedule`` starts an
episode: its stamp ``t0`` is the episode's first observation, a reading stamped ``t`` is
step ``round((t - t0) / control_period_s)``, states 0..T are published with the schedule's
goal rows and nothing after T. Readings that arrived before their schedule are kept briefly
and fused again when it comes (the first observation races the schedule). Without any
schedule: episode 0 from the first joint state, the task's default goals, open-ended.

Per step: the simulator (or robot + tracker) sends the objects, then the joints. The state
of a step is published when its joint state is in and the objects for it are fused; a
missing object reading is waited for ``object_wait_s`` (wall time), then bridged by the
filters' prediction. The same joint stamp again re-publishes the same state. Staleness is
judged in ROS time (a paused lockstep clock is not stale): a control-rate timer on the node
clock re-publishes the last state with ``stale`` set when the joint readings stop, and a
state fused from object readings older than ``stale_timeout_s`` carries ``stale``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from mbrl_ros.core.episode_clock import EpisodeClock
from mbrl_ros.core.state_assembly import KalmanSettings, TaskStateAssembler
from mbrl_ros.msg import GoalSchedule, ObjectStates, StateField, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.sim.adroit import HAND_JOINT_NAMES
from mbrl_ros.sim.scene_cube import CUBE_SPAWN_POS
from mbrl_ros.srv import ResetEpisode

KALMAN = [
    Param("kalman.position_noise_std", 0.001, "tracker position noise std (m)", 0.0, 1.0,
          read_only=True),
    Param("kalman.angle_noise_std", 0.01, "tracker orientation noise std (rad)", 0.0, 3.2,
          read_only=True),
    Param("kalman.linear_accel_psd", 10.0, "spectral density of the objects' unmodelled "
          "linear acceleration (m^2/s^3): larger follows velocity changes faster, smaller "
          "smooths more", 1e-6, 1e6, read_only=True),
    Param("kalman.angular_accel_psd", 1000.0, "spectral density of the unmodelled angular "
          "acceleration (rad^2/s^3)", 1e-6, 1e8, read_only=True),
    Param("kalman.initial_linear_vel_std", 1.0, "std of the zero linear velocity assumed at "
          "an object's first reading (m/s)", 1e-6, 100.0, read_only=True),
    Param("kalman.initial_angular_vel_std", 10.0, "std of the zero angular rate assumed at "
          "an object's first reading (rad/s)", 1e-6, 1000.0, read_only=True),
    Param("kalman.linear_velocity_noise_std", 0.01, "noise std of linear velocities the "
          "tracker measures itself (m/s; used when object_states carry twists)", 0.0, 100.0,
          read_only=True),
    Param("kalman.angular_velocity_noise_std", 0.1, "noise std of angular velocities the "
          "tracker measures itself (rad/s)", 0.0, 1000.0, read_only=True),
]
PARAMS = [
    *TASK_PARAMS,
    Param("joints", list(HAND_JOINT_NAMES), "names of the state's 24 joints in the task's "
          "order (PDDM's actuator order), as they appear in joint_states", read_only=True),
    Param("ignore_extra_joints", False, "accept joint_states that also list joints outside "
          "'joints' (e.g. a robot arm's) and ignore those; false rejects such messages"),
    Param("control_period_s", 0.1, "control period (PDDM 0.1 s): steps are "
          "round((stamp - t0) / control_period_s); also the stale-check timer period",
          0.001, 10.0, read_only=True),
    Param("object_wait_s", 0.02, "wall seconds to wait for a step's object reading after "
          "its joint state before bridging the gap with the filters' prediction", 0.0, 1.0,
          read_only=True),
    Param("stale_timeout_s", 0.5, "ROS seconds after which a joint or object reading is too "
          "old: the state is flagged stale", 0.001, 60.0),
    Param("max_measurement_age_s", 1.0, "object readings older than this (s) relative to "
          "the newest joint reading are discarded as late", 0.001, 60.0),
    Param("cube_position_origin", list(CUBE_SPAWN_POS), "world point (m) the cube's "
          "state position is measured from (PDDM: its slide joints, zero at the spawn "
          "point of the simulated cube)", read_only=True),
    Param("frame_id", "world", "frame_id of the published task states", read_only=True),
    *KALMAN,
]
# Recent readings kept to be fused again when their episode's schedule arrives late.
REPLAY_DEPTH = 64
# Diagnostics stay WARN this long (wall seconds) after a dropout or refused reading.
TROUBLE_WINDOW_S = 2.0


def _check_params(values: dict[str, Any]) -> str | None:
    problem = check_task_params(values)
    if problem:
        return problem
    joints = values["joints"]
    if len(joints) != len(HAND_JOINT_NAMES) or len(set(joints)) != len(joints):
        return f"joints must be {len(HAND_JOINT_NAMES)} distinct names, got {joints}"
    origin = values["cube_position_origin"]
    if len(origin) != 3:
        return f"cube_position_origin needs 3 numbers, got {origin}"
    return None


@dataclass(frozen=True)
class ObjectReading:
    """One parsed ``object_states`` message (world frame, stamp in ns)."""

    stamp_ns: int
    names: tuple[str, ...]
    positions: np.ndarray
    quats: np.ndarray
    linvels: np.ndarray | None
    angvels: np.ndarray | None


@dataclass
class PendingJoint:
    """A joint state whose step waits for its object reading."""

    stamp_ns: int
    q: np.ndarray
    received: float  # time.monotonic() at receipt


class StateEstimatorNode(Node):
    """Adapter between joint/object/schedule messages and the ROS-free estimation core."""

    def __init__(self) -> None:
        super().__init__("state_estimator")
        self.params = ParameterSet(self, PARAMS, checks=[_check_params])
        p = self.params.snapshot()
        self.task = task_from_params(p)
        settings = KalmanSettings(
            position_noise_std=p["kalman.position_noise_std"],
            angle_noise_std=p["kalman.angle_noise_std"],
            linear_accel_psd=p["kalman.linear_accel_psd"],
            angular_accel_psd=p["kalman.angular_accel_psd"],
            initial_linear_rate_std=p["kalman.initial_linear_vel_std"],
            initial_angular_rate_std=p["kalman.initial_angular_vel_std"],
            linear_velocity_noise_std=p["kalman.linear_velocity_noise_std"],
            angular_velocity_noise_std=p["kalman.angular_velocity_noise_std"])
        origins = {"cube": p["cube_position_origin"]} if self.task.name == "cube" else None
        self.assembler = TaskStateAssembler(self.task, settings, origins)
        self.joints = list(p["joints"])
        self.period_s = float(p["control_period_s"])
        self.period_ns = round(self.period_s * conv.NS_PER_S)
        self.layout_msg = [StateField(name=n, start=s, size=z)
                           for n, s, z in self.task.layout.to_msg_fields()]
        self.default_goals = self.task.episode_goals(0).double().numpy()

        self.episode: EpisodeClock | None = None  # None: no schedule and no joint state yet
        self.scheduled = False
        self._time_base_ns: int | None = None  # filters run on seconds since this stamp
        self._joints_seen: deque[tuple[int, np.ndarray]] = deque(maxlen=REPLAY_DEPTH)
        self._objects_seen: deque[ObjectReading] = deque(maxlen=REPLAY_DEPTH)
        self._pending: PendingJoint | None = None
        # Stamp of the joint state fused last: a reading stamped after it is this step's.
        self._fused_joint_ns: int | None = None
        self._newest_object_ns: int | None = None
        self._newest_joint_ns: int | None = None
        self._last: TaskState | None = None
        self._last_step = -1
        self._stale = False
        self.counts = dict(published=0, republished=0, stale_published=0, dropouts=0,
                           late_objects=0, out_of_order=0, duplicate_objects=0,
                           before_episode=0, after_episode=0, same_step=0, no_objects=0)
        self._last_trouble = -1e9  # time.monotonic() of the last dropout or refused reading

        self.pub_state = self.create_publisher(TaskState, "task_state", conv.RECORDED_QOS_DEPTH)
        self.pub_latency = self.create_publisher(Float64, "~/latency_ms", 10)
        self.create_subscription(JointState, "joint_states", self._on_joints, 10)
        self.create_subscription(ObjectStates, "object_states", self._on_objects, 10)
        self.create_subscription(GoalSchedule, "goal_schedule", self._on_schedule,
                                 conv.SCHEDULE_SUB_QOS)
        self.create_service(ResetEpisode, "~/reset", self._on_reset)
        self.diagnostics = Diagnostics(self, self._health, hardware_id=f"task:{self.task.name}")
        self.params.report_to(self.diagnostics)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._wait_timer = self.create_timer(max(p["object_wait_s"], 1e-3), self._on_wait_over,
                                             clock=steady)
        self._wait_timer.cancel()
        self.create_timer(self.period_s, self._check_stale)  # node clock: ROS time
        self.get_logger().info(
            f"estimating '{self.task.name}' states ({self.task.state_dim} values) every "
            f"{self.period_s:.3f} s; objects {list(self.assembler.object_names)}")

    # ----- helpers --------------------------------------------------------------------------
    def _seconds(self, stamp_ns: int) -> float:
        if self._time_base_ns is None:
            self._time_base_ns = stamp_ns
        return (stamp_ns - self._time_base_ns) / conv.NS_PER_S

    def _trouble(self, kind: str) -> None:
        """Count a dropout or refused reading (diagnostics warn for a while after one)."""
        self.counts[kind] += 1
        self._last_trouble = time.monotonic()

    def _episode_id(self) -> int:
        return self.episode.episode_id if self.episode is not None else 0

    # ----- inputs ---------------------------------------------------------------------------
    def _parse_joints(self, msg: JointState) -> np.ndarray:
        """Positions in ``joints`` order, whatever order the message lists them in;
        ValueError naming the problem (sizes, unknown/missing/duplicate names, NaN/Inf)."""
        n = len(msg.name)
        if len(msg.position) != n or len(msg.velocity) not in (0, n) or len(
                msg.effort) not in (0, n):
            raise ValueError(f"{n} names but {len(msg.position)} positions, "
                             f"{len(msg.velocity)} velocities, {len(msg.effort)} efforts")
        index = {name: i for i, name in enumerate(msg.name)}
        if len(index) != n:
            dupes = sorted(name for name, count in Counter(msg.name).items() if count > 1)
            raise ValueError(f"duplicate joint names: {dupes}")
        unknown = ([] if self.params["ignore_extra_joints"]
                   else sorted(set(index) - set(self.joints)))
        missing = [name for name in self.joints if name not in index]
        if unknown or missing:
            raise ValueError(f"joint names do not match the 'joints' parameter: unknown "
                             f"{unknown}, missing {missing}")
        order = np.array([index[name] for name in self.joints])
        q = np.asarray(msg.position, dtype=np.float64)[order]
        bad = [self.joints[i] for i in np.flatnonzero(~np.isfinite(q))]
        if len(msg.velocity):
            v = np.asarray(msg.velocity, dtype=np.float64)[order]
            bad += [f"{self.joints[i]} (velocity)" for i in np.flatnonzero(~np.isfinite(v))]
        if bad:
            raise ValueError(f"non-finite values of {bad}")
        return q

    def _parse_objects(self, msg: ObjectStates) -> ObjectReading:
        n = len(msg.names)
        if len(msg.poses) != n or len(msg.twists) not in (0, n):
            raise ValueError(f"{n} names, {len(msg.poses)} poses and {len(msg.twists)} twists")
        if len(set(msg.names)) != n:
            raise ValueError(f"duplicate object names in {list(msg.names)}")
        wanted = [i for i, name in enumerate(msg.names) if name in self.assembler.filters]
        if not wanted:
            raise ValueError(f"none of the tracked objects {list(self.assembler.object_names)}"
                             f" in {list(msg.names)}")
        poses = [msg.poses[i] for i in wanted]
        pos = np.array([[p.position.x, p.position.y, p.position.z] for p in poses])
        quat = np.array([[p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]
                         for p in poses])
        lin = ang = None
        if msg.twists:
            tw = [msg.twists[i] for i in wanted]
            lin = np.array([[t.linear.x, t.linear.y, t.linear.z] for t in tw])
            ang = np.array([[t.angular.x, t.angular.y, t.angular.z] for t in tw])
        for what, arr in (("positions", pos), ("orientations", quat), ("linear velocities", lin),
                          ("angular velocities", ang)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise ValueError(f"non-finite {what}")
        if np.any(np.abs(np.linalg.norm(quat, axis=1) - 1.0) > 1e-3):
            raise ValueError("orientations are not unit quaternions")
        return ObjectReading(conv.ns_from_time(msg.header.stamp),
                             tuple(msg.names[i] for i in wanted), pos, quat, lin, ang)

    def _on_objects(self, msg: ObjectStates) -> None:
        try:
            reading = self._parse_objects(msg)
        except ValueError as exc:
            self.diagnostics.problem("object_states", f"{exc}; reading dropped")
            return
        self._objects_seen.append(reading)
        self._fuse(reading)
        if self._pending is not None and self._objects_ready(self._pending.stamp_ns):
            self._flush_pending()

    def _fuse(self, reading: ObjectReading) -> None:
        stamp = reading.stamp_ns
        if self.episode is not None and self.scheduled and stamp < self.episode.t0_ns:
            self.counts["before_episode"] += 1
            return
        newest_joint = self._newest_joint_ns
        max_age_ns = round(self.params["max_measurement_age_s"] * conv.NS_PER_S)
        if newest_joint is not None and stamp < newest_joint - max_age_ns:
            self._trouble("late_objects")
            self.diagnostics.problem("late_object", f"object reading {stamp} ns is older than "
                                     f"{self.params['max_measurement_age_s']} s; dropped")
            return
        if self._newest_object_ns is not None and stamp <= self._newest_object_ns:
            if stamp == self._newest_object_ns:
                self.counts["duplicate_objects"] += 1  # lockstep re-publish of a step
            else:
                self._trouble("out_of_order")
                self.diagnostics.problem("out_of_order_object", f"object reading {stamp} ns "
                                         f"is older than the newest fused; dropped")
            return
        t = self._seconds(stamp)
        try:
            for i, name in enumerate(reading.names):
                self.assembler.add_object(
                    name, reading.positions[i], reading.quats[i], t,
                    None if reading.linvels is None else reading.linvels[i],
                    None if reading.angvels is None else reading.angvels[i])
        except ValueError as exc:
            self.diagnostics.problem("object_states", f"{exc}; reading dropped")
            return
        self._newest_object_ns = stamp

    def _on_joints(self, msg: JointState) -> None:
        received = time.monotonic()
        try:
            q = self._parse_joints(msg)
        except ValueError as exc:
            self.diagnostics.problem("joint_states", f"{exc}; reading dropped")
            return
        stamp = conv.ns_from_time(msg.header.stamp)
        self._newest_joint_ns = max(stamp, self._newest_joint_ns or stamp)
        self._stale = False
        last = self._last
        if last is not None and conv.ns_from_time(last.header.stamp) == stamp:
            self.counts["republished"] += 1
            self._publish(last, received)  # lockstep re-publish: the same state again
            return
        if self._pending is not None:
            if self._pending.stamp_ns == stamp:
                return  # still waiting for this step's objects
            self._flush_pending(dropout=True)  # the next step came first: no objects came
        self._joints_seen.append((stamp, q))
        self._handle_joint(stamp, q, received, may_wait=True)

    def _handle_joint(self, stamp: int, q: np.ndarray, received: float, may_wait: bool) -> None:
        if self.episode is None:
            self.episode = EpisodeClock(stamp, self.period_ns, 0, 0, self.default_goals)
            self.get_logger().info("no goal schedule: episode 0 starts at this joint state")
        clock = self.episode
        if stamp < clock.t0_ns:
            self.counts["before_episode"] += 1
            return
        if clock.is_over(stamp):
            self.counts["after_episode"] += 1
            return
        step = clock.step_of(stamp)
        if step <= self._last_step:
            if step == self._last_step:
                self.counts["same_step"] += 1
            else:
                self._trouble("out_of_order")
                self.diagnostics.problem("out_of_order_joint", f"joint state of step {step} "
                                         f"after step {self._last_step}; dropped")
            return
        pending = PendingJoint(stamp, q, received)
        if self._objects_ready(stamp) or not may_wait:
            self._assemble_and_publish(pending)
        elif self.params["object_wait_s"] <= 0.0:
            self._assemble_and_publish(pending, dropout=True)
        else:
            self._pending = pending
            self._wait_timer.reset()

    def _objects_ready(self, stamp: int) -> bool:
        """A reading for the joint state stamped ``stamp`` is fused: one stamped at or after
        it, or (a tracker on its own clock) after the joint state fused last. A late reading
        of the previous step does not count: that step was already bridged."""
        newest = self._newest_object_ns
        if newest is None:
            return False
        return newest >= stamp or (self._fused_joint_ns is not None
                                   and newest > self._fused_joint_ns)

    def _on_wait_over(self) -> None:
        self._wait_timer.cancel()
        if self._pending is not None:
            self._flush_pending(dropout=True)

    def _flush_pending(self, dropout: bool = False) -> None:
        pending, self._pending = self._pending, None
        self._wait_timer.cancel()
        if pending is not None:
            self._assemble_and_publish(pending, dropout=dropout)

    def _on_schedule(self, msg: GoalSchedule) -> None:
        try:
            goals = conv.schedule_goals(msg, self.task.name, self.task.goal_dim,
                                        self.task.goal_frame)
            clock = EpisodeClock.from_schedule(
                conv.ns_from_time(msg.header.stamp), self.period_s, msg.episode_id,
                msg.episode_length, goals, msg.goal_dim)
        except ValueError as exc:
            self.diagnostics.problem("goal_schedule", f"{exc}; schedule ignored")
            return
        old = self.episode
        if (self.scheduled and old is not None and old.episode_id == clock.episode_id
                and old.t0_ns == clock.t0_ns):
            if clock.episode_length != old.episode_length:  # ended early (a drop)
                self.episode = clock
                self.get_logger().info(f"episode {clock.episode_id} now ends at step "
                                       f"{clock.episode_length or 'open-ended'}")
            return  # otherwise the same schedule again
        self.episode, self.scheduled = clock, True
        self._start_episode()
        self.get_logger().info(
            f"episode {clock.episode_id}: t0 {clock.t0_ns / conv.NS_PER_S:.3f} s, "
            f"{clock.episode_length or 'open-ended'} steps, {clock.goals.shape[0]} goal rows")
        self._replay(clock.t0_ns)

    def _start_episode(self) -> None:
        self.assembler.reset()
        self._pending = None
        self._wait_timer.cancel()
        self._newest_object_ns = self._fused_joint_ns = None
        self._last, self._last_step = None, -1

    def _replay(self, since_ns: int) -> None:
        """Fuse again what arrived before the schedule: objects and joints from ``since_ns``
        in stamp order (objects first at equal stamps), the newest joint state may wait."""
        events = [(r.stamp_ns, 0, r) for r in self._objects_seen if r.stamp_ns >= since_ns]
        joints = [(s, 1, q) for s, q in self._joints_seen if s >= since_ns]
        events += joints
        events.sort(key=lambda e: (e[0], e[1]))
        newest_joint = max((s for s, _, _ in joints), default=None)
        # the new episode's time line (a restarted simulator's clock may start over)
        self._newest_joint_ns = newest_joint
        now = time.monotonic()
        for stamp, kind, item in events:
            if kind == 0:
                self._fuse(item)
            else:
                self._handle_joint(stamp, item, now, may_wait=stamp == newest_joint)

    def _on_reset(self, req, res):
        current = self._episode_id()
        problem = None
        if req.task and req.task != self.task.name:
            problem = f"reset for task '{req.task}', this estimator runs '{self.task.name}'"
        elif req.episode_id and req.episode_id < current:
            problem = (f"reset for episode {req.episode_id}, older than the current episode "
                       f"{current} (a late request?)")
        if problem:
            self.diagnostics.problem("reset", f"{problem}; refused, filters kept")
            res.success, res.episode_id, res.message = False, current, problem
            return res
        self.assembler.reset()
        self._pending = None
        self._wait_timer.cancel()
        self._newest_object_ns = None
        res.success, res.episode_id = True, self._episode_id()
        res.message = "filters reset"
        self.get_logger().info("filters reset on request")
        return res

    # ----- outputs --------------------------------------------------------------------------
    def _assemble_and_publish(self, pending: PendingJoint, dropout: bool = False) -> None:
        clock = self.episode
        step = clock.step_of(pending.stamp_ns)
        self._fused_joint_ns = pending.stamp_ns
        if not self.assembler.ready():
            self._trouble("no_objects")
            self.diagnostics.problem("no_objects", f"no reading yet of every object for step "
                                     f"{step}; state not published")
            return
        t = self._seconds(pending.stamp_ns)
        goal = clock.goal_at(step)
        try:
            assembled = self.assembler.assemble(pending.q, t, goal)
        except ValueError as exc:
            self.diagnostics.problem("assembly", f"{exc}; state of step {step} not published")
            return
        if dropout:
            self._trouble("dropouts")
        age = max(0.0, t - assembled.oldest_object_time)
        msg = TaskState(task=self.task.name, episode_id=clock.episode_id, step=step,
                        state=assembled.state.tolist(), layout=self.layout_msg,
                        goal=assembled.goal.tolist(), stale=age > self.params["stale_timeout_s"],
                        age=age)
        msg.header.stamp = conv.time_from_ns(pending.stamp_ns)
        msg.header.frame_id = self.params["frame_id"]
        self._last, self._last_step = msg, step
        self.counts["published"] += 1
        self._publish(msg, pending.received)
        if clock.is_last(step):
            self.get_logger().info(f"episode {clock.episode_id} complete: state {step} sent")

    def _publish(self, msg: TaskState, received: float) -> None:
        self.pub_state.publish(msg)
        self.pub_latency.publish(Float64(data=(time.monotonic() - received) * 1e3))

    def _check_stale(self) -> None:
        """Control-rate timer on ROS time: re-publish the last state flagged stale when the
        joint readings stopped (not after the last state of a scheduled episode)."""
        last, newest = self._last, self._newest_joint_ns
        if last is None or newest is None:
            return
        now = self.get_clock().now().nanoseconds
        timeout_ns = round(self.params["stale_timeout_s"] * conv.NS_PER_S)
        if now - newest <= timeout_ns:
            return
        self._stale = True
        if self.episode is not None and self.episode.is_last(self._last_step):
            return
        oldest = min(newest, self._newest_object_ns if self._newest_object_ns is not None
                     else newest)
        stale = TaskState(task=last.task, episode_id=last.episode_id, step=last.step,
                          state=last.state, layout=last.layout, goal=last.goal, stale=True,
                          age=(now - oldest) / conv.NS_PER_S)
        stale.header = last.header
        self.counts["stale_published"] += 1
        self._publish(stale, time.monotonic())

    def _health(self):
        counts = dict(self.counts)
        last = self._last
        values: dict[str, Any] = {
            "task": self.task.name, "episode": self._episode_id(),
            "scheduled": self.scheduled, "step": self._last_step,
            "age_s": round(last.age, 4) if last is not None else "",
            "rejected_out_of_order_filter": self.assembler.rejected, **counts}
        if self._stale or (last is not None and last.stale):
            return ERROR, "stale: no recent joint or object readings", values
        if time.monotonic() - self._last_trouble < TROUBLE_WINDOW_S:
            return WARN, (f"tracker dropouts bridged: {counts['dropouts']}, late readings: "
                          f"{counts['late_objects']}, out of order: {counts['out_of_order']}, "
                          f"steps without object data: {counts['no_objects']}"), values
        return OK, "estimating", values


def main() -> int:
    return run_node(StateEstimatorNode)
