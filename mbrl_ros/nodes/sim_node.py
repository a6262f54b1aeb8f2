"""``shadow_hand_sim``: the MuJoCo ShadowHand standing in for the robot and its tracker.

Speaks what a real hand exposes through ros2_control: joint position targets (rad) as
``std_msgs/Float64MultiArray`` on ``joint_commands`` in the declared ``joints`` order (the
forward position controller's interface), ``sensor_msgs/JointState`` back on
``joint_states``; the tracker's object poses on ``object_states``. Two modes:

- ``realtime``: steps on the wall clock at the control rate, reports real-time factor and
  overruns;
- ``lockstep``: advances exactly one control step per accepted command and publishes
  ``/clock``, so the whole stack runs as fast as it can on simulated time.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from visualization_msgs.msg import MarkerArray

from mbrl_ros.core.validation import finite_vector
from mbrl_ros.msg import GoalSchedule, ObjectStates
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.parameters import ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.sim_params import PARAM_CHECKS, PARAMS, sim_config
from mbrl_ros.sim import SCENES, HandSim, SimState
from mbrl_ros.sim.guard import route_mujoco_warnings
from mbrl_ros.srv import GetGoal, ResetEpisode, SetGoal

MAX_EPISODE_ID = 2**32 - 1  # episode ids are uint32 in every message


class ShadowHandSimNode(Node):
    """Adapter between ROS messages and ``mbrl_ros.sim.HandSim``."""

    def __init__(self) -> None:
        super().__init__("shadow_hand_sim")
        self.params = ParameterSet(self, PARAMS, checks=PARAM_CHECKS)
        p = self.params.snapshot()
        self.lockstep = p["mode"] == "lockstep"
        self._config = sim_config(p)
        self.sim = HandSim(p["task"], self._config)
        self.joints = list(p["joints"])
        # command/state in `joints` order <-> the simulator's actuator order
        self._to_sim = np.array([self.joints.index(n) for n in self.sim.joint_names])
        self._from_sim = np.array([self.sim.joint_names.index(n) for n in self.joints])
        self._lock = threading.RLock()
        self.episode_id = 1
        self._schedule: np.ndarray | None = None
        self._schedule_frame = ""
        self._clock_ns = 0  # lockstep time: monotonic across episodes, unlike MuJoCo's
        self._last_command_wall = time.monotonic()
        self.steps = self.rejected_commands = self.faults = self.overruns = 0
        self._rtf = 0.0
        self._rtf_window: tuple[float, int] = (time.monotonic(), 0)

        self.pub_joints = self.create_publisher(JointState, "joint_states", 10)
        self.pub_objects = self.create_publisher(ObjectStates, "object_states", 10)
        self.pub_markers = self.create_publisher(MarkerArray, "scene_markers", 1)
        self.pub_clock = self.create_publisher(ClockMsg, "/clock", 10) if self.lockstep else None
        self.create_subscription(Float64MultiArray, "joint_commands", self._on_command, 10)
        self.create_subscription(GoalSchedule, "goal_schedule", self._on_schedule,
                                 conv.SCHEDULE_SUB_QOS)
        self.create_service(ResetEpisode, "reset_episode", self._on_reset)
        self.create_service(SetGoal, "set_goal", self._on_set_goal)
        self.create_service(GetGoal, "get_goal", self._on_get_goal)
        self.diagnostics = Diagnostics(self, self._health, hardware_id=f"sim:{p['task']}")
        self.params.report_to(self.diagnostics)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        if self.lockstep:
            self.create_timer(0.05, self._lockstep_watchdog, clock=steady)
        else:
            self.create_timer(self.sim.control_dt, self._realtime_tick, clock=steady)
        if p["marker_rate_hz"] > 0:
            self.create_timer(1.0 / p["marker_rate_hz"], self._publish_markers, clock=steady)
        self.get_logger().info(
            f"simulating '{p['task']}' in {p['mode']} mode, control step "
            f"{self.sim.control_dt * 1e3:.0f} ms, {len(self.joints)} joints")
        with self._lock:
            self._publish(self.sim.observe())

    # ----- time ---------------------------------------------------------------------------
    def _stamp_ns(self) -> int:
        return self._clock_ns if self.lockstep else self.get_clock().now().nanoseconds

    # ----- inputs -------------------------------------------------------------------------
    def _on_command(self, msg: Float64MultiArray) -> None:
        try:
            q = finite_vector(msg.data, len(self.joints), "joint command")
            q_sim = q[self._to_sim]
            outside = self.sim.joints_out_of_limits(q_sim)
            if outside and self.params["out_of_limit"] == "reject":
                raise ValueError(f"targets outside the joint limits for {outside}")
        except ValueError as exc:
            self.rejected_commands += 1
            self.diagnostics.problem("command", f"{exc}; keeping the last valid command")
            return
        with self._lock:
            self.sim.set_joint_targets(q_sim)
            self._last_command_wall = time.monotonic()
            if self.lockstep:
                self._advance()

    def _on_schedule(self, msg: GoalSchedule) -> None:
        try:
            goals = conv.schedule_goals(msg, "", int(np.prod(self.sim.scene.goal_shape)))
            frame = self.sim.scene.check_goal_frame(msg.header.frame_id)
        except ValueError as exc:
            self.diagnostics.problem("goal_schedule", str(exc))
            return
        with self._lock:
            self._schedule, self._schedule_frame = goals, frame
            self._apply_schedule()

    def _apply_schedule(self) -> None:
        if self._schedule is not None:
            row = min(self.sim.step_index, len(self._schedule) - 1)
            self.sim.set_goal(self._schedule[row].reshape(self.sim.scene.goal_shape),
                              self._schedule_frame)

    def _on_reset(self, req: ResetEpisode.Request, res: ResetEpisode.Response):
        try:
            with self._lock:
                sim = self.sim  # a refused request leaves the running task in place
                if req.task and req.task != sim.scene.name:
                    if req.task not in SCENES:
                        raise ValueError(f"unknown task '{req.task}' (have {sorted(SCENES)})")
                    sim = HandSim(req.task, self._config)
                initial = None
                if len(req.initial_qpos):
                    qpos = finite_vector(req.initial_qpos, sim.model.nq, "initial_qpos")
                    initial = SimState(qpos=qpos, qvel=np.zeros(sim.model.nv))
                episode_id = req.episode_id or self.episode_id + 1
                if episode_id > MAX_EPISODE_ID:
                    raise ValueError(f"episode ids are exhausted after {self.episode_id}: "
                                     "give the next id explicitly")
                obs = sim.reset(seed=int(req.seed), initial_state=initial)
                self.sim, self.episode_id = sim, episode_id
                self._schedule = None
                if self.lockstep:
                    self._tick_clock()
                stamp = self._publish(obs)
        except ValueError as exc:
            self.diagnostics.problem("reset", str(exc))
            res.success, res.message = False, str(exc)
            return res
        res.success, res.episode_id = True, self.episode_id
        res.first_observation_stamp = conv.time_from_ns(stamp)
        res.message = f"episode {self.episode_id} of '{self.sim.scene.name}', seed {req.seed}"
        self.get_logger().info(res.message)
        return res

    def _on_set_goal(self, req: SetGoal.Request, res: SetGoal.Response):
        try:
            with self._lock:
                self.sim.set_goal(np.asarray(req.goal), req.frame)
                self._schedule = None
        except ValueError as exc:
            self.diagnostics.problem("goal", str(exc))
            res.success, res.message = False, str(exc)
            return res
        res.success, res.message = True, "goal set (holds until the next reset or schedule)"
        return res

    def _on_get_goal(self, _req: GetGoal.Request, res: GetGoal.Response):
        with self._lock:
            res.goal = self.sim.goal.ravel().tolist()
            res.frame = self.sim.goal_frame
            res.step, res.episode_id = self.sim.step_index, self.episode_id
        return res

    # ----- stepping -----------------------------------------------------------------------
    def _advance(self) -> None:
        """One control step (lock held): schedule's goal, physics, clock, publish."""
        self._apply_schedule()
        result = self.sim.step()
        self.steps += 1
        if result.fault is not None:
            self.faults += 1
            self.diagnostics.problem("physics", f"{result.fault}; episode reset to the keyframe")
        if self.lockstep:
            self._tick_clock()
        self._publish(result.observation)

    def _tick_clock(self, steps: int = 1) -> None:
        """Lockstep: advance simulated ROS time by ``steps`` control steps, publish /clock."""
        self._clock_ns += steps * round(self.sim.control_dt * conv.NS_PER_S)
        self.pub_clock.publish(ClockMsg(clock=conv.time_from_ns(self._clock_ns)))

    def _realtime_tick(self) -> None:
        start = time.monotonic()
        with self._lock:
            self._advance()
        if time.monotonic() - start > self.sim.control_dt:
            self.overruns += 1
        t0, n0 = self._rtf_window
        if start - t0 >= 2.0:
            self._rtf = (self.steps - n0) * self.sim.control_dt / (start - t0)
            self._rtf_window = (start, self.steps)

    def _lockstep_watchdog(self) -> None:
        if time.monotonic() - self._last_command_wall > self.params["lockstep_republish_s"]:
            with self._lock:
                self._last_command_wall = time.monotonic()
                self._tick_clock(steps=0)
                self._publish(self.sim.observe())

    # ----- outputs ------------------------------------------------------------------------
    def _publish(self, obs) -> int:
        """Object states (unless dropped), then joint states; returns the joint stamp (ns).

        Objects go first so that a subscriber reacting to the joint state of a step (the
        state estimator) normally has that step's object reading already.
        """
        stamp_ns = self._stamp_ns()
        frame = self.params["frame_id"]
        if obs.objects is not None:
            lag = (obs.step - obs.objects_step) * self.sim.control_dt
            om = ObjectStates(episode_id=self.episode_id, step=obs.objects_step,
                              names=list(self.sim.scene.object_names))
            om.header.stamp = conv.time_from_ns(max(0, stamp_ns - int(lag * conv.NS_PER_S)))
            om.header.frame_id = frame
            om.poses = [conv.pose(p, q) for p, q in zip(obs.objects.pos, obs.objects.quat,
                                                         strict=True)]
            if self.params["tracker_reports_velocity"]:
                om.twists = [conv.twist(v, w) for v, w in zip(obs.objects.linvel,
                                                              obs.objects.angvel, strict=True)]
            self.pub_objects.publish(om)
        js = JointState(name=self.joints, position=obs.joint_pos[self._from_sim].tolist(),
                        velocity=obs.joint_vel[self._from_sim].tolist())
        js.header.stamp, js.header.frame_id = conv.time_from_ns(stamp_ns), frame
        self.pub_joints.publish(js)
        return stamp_ns

    def _publish_markers(self) -> None:
        with self._lock:
            prims = self.sim.geometry()
        stamp = conv.time_from_ns(self._stamp_ns())
        frame = self.params["frame_id"]
        self.pub_markers.publish(MarkerArray(
            markers=[conv.marker(p, i, frame, stamp) for i, p in enumerate(prims)]))

    def _health(self):
        values = {"task": self.sim.scene.name, "mode": "lockstep" if self.lockstep else "realtime",
                  "episode": self.episode_id, "step": self.sim.step_index, "steps": self.steps,
                  "rejected_commands": self.rejected_commands, "physics_faults": self.faults,
                  "overruns": self.overruns, "real_time_factor": round(self._rtf, 3)}
        if not self.lockstep and self.steps > 20 and self._rtf < 0.9:
            return WARN, f"running slower than real time (factor {self._rtf:.2f})", values
        if self.faults:
            return ERROR if self.faults > 10 else WARN, f"{self.faults} physics faults", values
        return OK, "simulating", values


def main() -> int:
    import logging

    log = logging.getLogger("mujoco")
    route_mujoco_warnings(lambda text: log.warning("MuJoCo: %s", text.strip()))
    return run_node(ShadowHandSimNode)
