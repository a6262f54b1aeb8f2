"""``state_estimator``: joint states + tracked objects -> the task state, once per control step.

A thin adapter: it parses ``joint_states``, ``object_states`` and ``goal_schedule`` into
arrays, hands them to the ROS-free :class:`StepSynchronizer` (which step a reading belongs
to, when a step's state is complete, what is late, stale or a dropout: the rules are in
``core/estimation/step_sync.py`` and docs/node_graph.md, steps 1-3) and publishes the
``TaskState`` messages it emits. It owns the two timers the synchronizer asks for: the
``object_wait_s`` wait for a step's objects (wall time) and the control-rate stale check
(ROS time: a paused lockstep clock is not stale).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from mbrl_ros.core.estimation.episode_clock import EpisodeClock
from mbrl_ros.core.estimation.state_assembly import KalmanSettings, TaskStateAssembler
from mbrl_ros.core.estimation.step_sync import (
    Emission,
    ObjectReading,
    StepSynchronizer,
    SyncLimits,
    SyncResult,
)
from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.msg import GoalSchedule, ObjectStates, StateField, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.srv import ResetEpisode

DEFAULT_ROBOT = load_robot()

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
    Param("joints", list(DEFAULT_ROBOT.joints), "names of the state's joints in the task's "
          "order (the robot's; PDDM's actuator order), as they appear in joint_states",
          read_only=True),
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
    try:
        robot = load_robot(values["robot"])
    except ValueError as exc:
        return str(exc)
    if len(joints) != robot.num_joints or len(set(joints)) != len(joints):
        return f"joints must be {robot.num_joints} distinct names, got {joints}"
    return None


class StateEstimatorNode(Node):
    """Adapter between joint/object/schedule messages and the ROS-free step synchronizer."""

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
        robot = load_robot(p["robot"])
        origins = robot.origins_of(o.name for o in self.task.tracked_objects)
        self.assembler = TaskStateAssembler(self.task, settings, origins)
        self.joints = list(p["joints"])
        self.period_s = float(p["control_period_s"])
        self.layout_msg = [StateField(name=n, start=s, size=z)
                           for n, s, z in self.task.layout.to_msg_fields()]
        self.sync = StepSynchronizer(
            self.assembler, self.period_s, self.task.episode_goals(0).double().numpy(),
            object_wait_s=p["object_wait_s"], problem=self._problem,
            info=self.get_logger().info, replay_depth=REPLAY_DEPTH)

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

    def _problem(self, kind: str, message: str) -> None:
        self.diagnostics.problem(kind, message)

    def _synced(self) -> StepSynchronizer:
        """The synchronizer with the operator's current limits."""
        self.sync.limits = SyncLimits(self.params["stale_timeout_s"],
                                      self.params["max_measurement_age_s"])
        return self.sync

    # ----- inputs ---------------------------------------------------------------------------
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
        self._apply(self._synced().add_objects(reading))

    def _on_joints(self, msg: JointState) -> None:
        received = time.monotonic()
        try:
            q = conv.joint_positions(msg, self.joints, self.params["ignore_extra_joints"])
        except ValueError as exc:
            self.diagnostics.problem("joint_states", f"{exc}; reading dropped")
            return
        self._apply(self._synced().add_joints(conv.ns_from_time(msg.header.stamp), q,
                                              received))

    def _on_wait_over(self) -> None:
        self._wait_timer.cancel()
        self._apply(self._synced().wait_over())

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
        self._apply(self._synced().start_schedule(clock))

    def _on_reset(self, req, res):
        current = self.sync.episode_id
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
        self.sync.reset_filters()
        self._wait_timer.cancel()
        res.success, res.episode_id, res.message = True, current, "filters reset"
        self.get_logger().info("filters reset on request")
        return res

    def _check_stale(self) -> None:
        self._apply(self._synced().check_stale(self.get_clock().now().nanoseconds))

    # ----- outputs --------------------------------------------------------------------------
    def _apply(self, result: SyncResult) -> None:
        """Publish what the synchronizer emitted; run the object wait timer as it asks."""
        if not self.sync.waiting:
            self._wait_timer.cancel()
        elif result.wait:
            self._wait_timer.reset()
        for emission in result.emit:
            self._publish(emission)

    def _publish(self, emission: Emission) -> None:
        s = emission.state
        msg = TaskState(task=self.task.name, episode_id=s.episode_id, step=s.step,
                        state=s.state.tolist(), layout=self.layout_msg, goal=s.goal.tolist(),
                        stale=s.stale, age=s.age)
        msg.header.stamp = conv.time_from_ns(s.stamp_ns)
        msg.header.frame_id = self.params["frame_id"]
        self.pub_state.publish(msg)
        self.pub_latency.publish(Float64(data=(time.monotonic() - emission.received) * 1e3))

    def _health(self):
        sync = self.sync
        counts = dict(sync.counts)
        last = sync.last
        values: dict[str, Any] = {
            "task": self.task.name, "episode": sync.episode_id,
            "scheduled": sync.scheduled, "step": sync.last_step,
            "age_s": round(last.age, 4) if last is not None else "",
            "rejected_out_of_order_filter": self.assembler.rejected, **counts}
        if sync.stale or (last is not None and last.stale):
            return ERROR, "stale: no recent joint or object readings", values
        if time.monotonic() - sync.last_trouble < TROUBLE_WINDOW_S:
            return WARN, (f"tracker dropouts bridged: {counts['dropouts']}, late readings: "
                          f"{counts['late_objects']}, out of order: {counts['out_of_order']}, "
                          f"steps without object data: {counts['no_objects']}"), values
        return OK, "estimating", values


def main() -> int:
    return run_node(StateEstimatorNode)
