"""``mpc_planner``: PDDM's MPC on the newest learned model, as a ROS 2 node.

A thin adapter around :class:`mbrl_ros.core.realtime.PlanningLoop` (docs/node_graph.md,
protocol step 4): ``task_state`` + ``goal_schedule`` in, joint targets out on
``joint_commands`` (``std_msgs/Float64MultiArray`` in the ``joints`` order, the forward
position controller's interface) and the full record on ``planned_action``. Models arrive
on ``model_update`` (reliable, transient local), are checked and deserialized in the
subscription callback, and the planning thread swaps them in between plans.

Modes: ``lockstep`` plans on each new state and answers as soon as the plan is ready;
``realtime`` publishes at ``control_rate_hz`` from a timer with a one-period planning budget
and counts deadline misses. A stale state makes the planner hold the last command.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import Point
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.timer import Timer
from std_msgs.msg import Float64, Float64MultiArray
from visualization_msgs.msg import Marker, MarkerArray

from mbrl_ros.core.control_types import HOLD, Command, StateInput
from mbrl_ros.core.model_check import ModelRejected, load_checked_model
from mbrl_ros.core.planners import tune_malloc_for_planning
from mbrl_ros.core.realtime import PlanningLoop
from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.core.tasks import Task
from mbrl_ros.core.validation import finite_vector
from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, PlannerStats, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.parameters import ParameterSet
from mbrl_ros.nodes.planner_params import (
    INFERENCE_DTYPES,
    PARAM_CHECKS,
    PARAMS,
    exploration_config,
    planner_settings,
)
from mbrl_ros.nodes.runtime import cap_torch_threads, run_node
from mbrl_ros.nodes.task_params import task_from_params
from mbrl_ros.srv import GetStatus

MISS_WINDOW_S = 5.0  # diagnostics WARN while deadline misses grew within this window
KEPT_SCHEDULES = 8


def object_position_fields(task: Task) -> list[tuple[str, slice]]:
    """``(object name, slice)`` of every ``<object>_pos`` field (3 values) of the layout."""
    return [(name[: -len("_pos")], task.layout.slice(name)) for name, size in task.layout.fields
            if name.endswith("_pos") and size == 3]


class MpcPlannerNode(Node):
    """Adapter between ROS messages and the core planning loop."""

    def __init__(self) -> None:
        super().__init__("mpc_planner")
        self.params = ParameterSet(self, PARAMS, checks=PARAM_CHECKS, on_change=self._on_params)
        p = self.params.snapshot()
        cap_torch_threads(p["torch_threads"])
        self.task = task_from_params(p)
        self._end_at_drop = bool(p["end_at_drop"])
        self.lockstep = p["mode"] == "lockstep"
        self.frame = p["frame_id"]
        self.robot = load_robot(p["robot"])
        if self.robot.num_joints != self.task.action_dim:
            raise ValueError(f"robot {self.robot.name!r} has {self.robot.num_joints} joints, "
                             f"task {self.task.name!r} acts on {self.task.action_dim}")
        self.joints = list(p["joints"])
        self._perm = self.robot.order_of(self.joints)  # joints order -> robot order index
        self.action_map = self._build_action_map(p)
        self._objects = object_position_fields(self.task)
        self._joint_slice = (self.task.layout.slice("joints")
                             if "joints" in self.task.layout.names else None)
        self._expected_layout = self.task.layout.to_msg_fields()
        device = p["device"]
        self._device_problem = ""
        if device == "cuda" and not torch.cuda.is_available():
            self._device_problem = "device 'cuda' requested but CUDA is not available; using cpu"
            device = "cpu"
        self.device = device
        self._settings = planner_settings({**p, "device": device})

        self._lock = threading.Lock()  # publishing and the command bookkeeping below
        self._schedule_lock = threading.Lock()
        self._last_targets: tuple[int, np.ndarray] | None = None
        self._newest_joints: tuple[int, np.ndarray | None] = (-1, None)  # joints order
        self._logged_note = ""
        self._holding = False
        self._schedules: dict[int, tuple[np.ndarray, int]] = {}
        self._unscheduled: TaskState | None = None  # newest state still waiting for its schedule
        self._misses: deque[tuple[float, int]] = deque()
        self.rejected_models = 0

        self.pub_command = self.create_publisher(Float64MultiArray, "joint_commands", 10)
        self.pub_planned = self.create_publisher(PlannedAction, "planned_action",
                                                 conv.RECORDED_QOS_DEPTH)
        self.pub_latency = self.create_publisher(Float64, "~/latency_ms", 10)
        self.pub_misses = self.create_publisher(Float64, "~/deadline_misses", 10)
        self.pub_return = self.create_publisher(Float64, "~/predicted_return", 10)
        self.pub_disagreement = self.create_publisher(Float64, "~/disagreement", 10)
        self.pub_version = self.create_publisher(Float64, "~/model_version", 10)
        self.pub_markers = self.create_publisher(MarkerArray, "~/plan_markers", 10)
        self.loop = PlanningLoop(
            self.task, self._settings, exploration_config(p), seed=p["seed"],
            policy=p["policy"], lockstep=self.lockstep, state_timeout=p["state_timeout_s"],
            period=1.0 / p["control_rate_hz"],
            on_plan=self._publish, on_error=self._on_planning_error)
        self.diagnostics = Diagnostics(self, self._health, hardware_id=f"planner:{self.task.name}")
        self.params.report_to(self.diagnostics)
        if self._device_problem:
            self.diagnostics.problem("device", self._device_problem)

        inputs = MutuallyExclusiveCallbackGroup()
        models = MutuallyExclusiveCallbackGroup()
        self._ticks = MutuallyExclusiveCallbackGroup()
        self.create_subscription(TaskState, "task_state", self._on_state, 10,
                                 callback_group=inputs)
        self.create_subscription(GoalSchedule, "goal_schedule", self._on_schedule,
                                 conv.SCHEDULE_SUB_QOS,
                                 callback_group=inputs)
        self.create_subscription(ModelUpdate, "model_update", self._on_model, conv.LATCHED_QOS,
                                 callback_group=models)
        self.create_service(GetStatus, "~/get_status", self._on_get_status)
        self._timer: Timer | None = None
        self._rate = p["control_rate_hz"]
        if not self.lockstep:
            self._start_timer(self._rate)
        # Everything alive now (modules, the scene, the node) lives as long as the process.
        # Keeping it out of the cyclic collector's scans turns full collections of half a
        # second (measured here, enough to miss several ticks) into ones of a few ms.
        gc.collect()
        gc.freeze()
        self.get_logger().info(
            f"planning '{self.task.name}' in {p['mode']} mode with {self._settings.name} "
            f"(N {p['num_samples']}, H {p['horizon']}), policy {p['policy']}, device {device}; "
            f"waiting for a model on model_update")

    # ----- set-up -------------------------------------------------------------------------
    def _build_action_map(self, p: dict[str, Any]) -> ActionMap:
        """PDDM's action map in ``joints`` order; the pieces not set come from the robot."""
        mid, low, high = (np.asarray(p[f"action_map.{k}"], dtype=np.float64)
                          for k in ("mid", "low", "high"))
        scale = float(p["action_map.scale"])
        robot_map = self.robot.action_map(self.task.name)
        mid = mid if mid.size else robot_map.mid[self._perm]
        low = low if low.size else robot_map.low[self._perm]
        high = high if high.size else robot_map.high[self._perm]
        scale = scale if scale > 0 else robot_map.scale
        return ActionMap(mid, np.stack([low, high], axis=-1), scale)

    def _start_timer(self, rate_hz: float) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self._timer = self.create_timer(1.0 / rate_hz, self._on_tick,
                                        callback_group=self._ticks,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))

    def close(self) -> None:
        """Stop the planning thread (run_node calls this before destroying the node)."""
        self.loop.close()

    # ----- inputs -------------------------------------------------------------------------
    def _on_params(self, values: dict[str, Any]) -> None:
        """Runtime changes (already validated): applied by the loop between plans."""
        self.loop.set_policy(values["policy"])
        self.loop.state_timeout = float(values["state_timeout_s"])
        settings = planner_settings({**values, "device": self.device})
        if settings != self._settings:
            self._settings = settings
            self.loop.set_settings(settings)
            self.get_logger().info(f"planner settings changed: {settings.name} "
                                   f"{dict(settings.options)} (from the next plan on)")
        if values["control_rate_hz"] != self._rate:
            self._rate = values["control_rate_hz"]
            self.loop.period = 1.0 / self._rate
            if not self.lockstep:
                self._start_timer(self._rate)
            self.get_logger().info(f"control rate now {self._rate} Hz")

    def _on_schedule(self, msg: GoalSchedule) -> None:
        try:
            goals = conv.schedule_goals(msg, self.task.name, self.task.goal_dim,
                                        self.task.goal_frame)
        except ValueError as exc:
            self.diagnostics.problem("goal_schedule", f"{exc}; schedule ignored")
            return
        with self._schedule_lock:
            self._schedules[int(msg.episode_id)] = (goals, int(msg.episode_length))
            while len(self._schedules) > KEPT_SCHEDULES:
                del self._schedules[min(self._schedules)]
            waiting, self._unscheduled = self._unscheduled, None
        # The estimator assigns a state to episode N only after it has N's schedule, but the
        # planner may get that state before the schedule itself: act on it now.
        if waiting is not None and waiting.episode_id == msg.episode_id:
            self._on_state(waiting)

    def _state_input(self, msg: TaskState) -> StateInput:
        """A validated StateInput for ``msg``; ValueError naming the problem."""
        if msg.task and msg.task != self.task.name:
            raise ValueError(f"state of task '{msg.task}', planning '{self.task.name}'")
        layout = [(f.name, int(f.start), int(f.size)) for f in msg.layout]
        if layout and layout != self._expected_layout:
            raise ValueError(f"state layout {layout} differs from the task's "
                             f"{self._expected_layout}")
        state = finite_vector(msg.state, self.task.state_dim, "TaskState.state")
        with self._schedule_lock:
            schedule = self._schedules.get(int(msg.episode_id))
        if schedule is not None:
            goals, length = schedule
            start = int(msg.step) + 1
        else:
            goals = finite_vector(msg.goal, self.task.goal_dim, "TaskState.goal")[None]
            length, start = 0, 0
        goal = torch.as_tensor(goals[min(int(msg.step), len(goals) - 1)])
        if self._end_at_drop and msg.step > 0 and self.task.terminates(
                torch.from_numpy(state), goal):
            length = int(msg.step)  # the episode ended at this state: no command for it
        return StateInput(episode_id=int(msg.episode_id), step=int(msg.step), state=state,
                          goals=goals, goal_start=start, episode_length=length,
                          stale=bool(msg.stale), received=time.monotonic())

    def _on_state(self, msg: TaskState) -> None:
        if not self.params["act_without_schedule"]:
            with self._schedule_lock:
                if int(msg.episode_id) not in self._schedules:
                    self._unscheduled = msg
                    return
        try:
            obs = self._state_input(msg)
        except ValueError as exc:
            self.diagnostics.problem("task_state", f"{exc}; state ignored")
            return
        self._newest_joints = (obs.episode_id, None if self._joint_slice is None
                               else obs.state[self._joint_slice][self._perm])
        if self.lockstep:
            command = self.loop.on_state(obs)
            if command is not None:
                self._publish(command)
        else:
            self.loop.observe(obs)

    def _on_model(self, msg: ModelUpdate) -> None:
        current = self.loop.accepted_version
        try:
            model = load_checked_model(
                bytes(msg.weights), format_version=int(msg.format_version),
                supported_format=ModelUpdate.FORMAT_VERSION, expected_checksum=msg.checksum,
                task_name=msg.task, state_fields=list(msg.state_fields), task=self.task,
                device=self.device)
        except ModelRejected as exc:
            self.rejected_models += 1
            self.diagnostics.problem("model_update", f"model version {msg.version} rejected: "
                                     f"{exc}; keeping model version {current}")
            return
        if msg.version <= current:
            self.get_logger().warning(f"model version {msg.version} is not newer than "
                                      f"{current}; using it anyway (a restarted trainer?)")
        model.set_inference_dtype(INFERENCE_DTYPES[self.params["inference_dtype"]])
        self.loop.set_model(model, int(msg.version))
        self.get_logger().info(f"model version {msg.version} accepted ({model.num_members} "
                               f"members, checksum {msg.checksum[:12]}); used from the next "
                               "plan on")

    def _on_planning_error(self, message: str) -> None:
        """The planning thread's failures, to /diagnostics. Once a shutdown began, rclpy
        destroys the node's handles while that thread may still send its last plan (run_node
        stops it after the context): such a failure is part of stopping, not reported."""
        try:
            self.diagnostics.problem("planning", message)
        except Exception:
            if self.context.ok():
                raise

    def _on_tick(self) -> None:
        command = self.loop.tick()
        if command is not None:
            self._publish(command)

    # ----- outputs ------------------------------------------------------------------------
    def _publish(self, cmd: Command) -> None:
        """Joint targets first, then the PlannedAction record, numbers and markers."""
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the planning thread's last plan goes nowhere
        with self._lock:
            targets, action = self._targets(cmd)
            self.pub_command.publish(Float64MultiArray(data=targets.tolist()))
            self._last_targets = (cmd.episode_id, targets)
            stamp = self.get_clock().now().to_msg()
            planned, result = self._planned_action(cmd, action, targets, stamp)
            self.pub_planned.publish(planned)
            stats = planned.stats
            self.pub_misses.publish(Float64(data=float(stats.deadline_misses)))
            self.pub_version.publish(Float64(data=float(stats.model_version)))
            if result is not None:
                self.pub_latency.publish(Float64(data=stats.plan_latency_ms))
                self.pub_return.publish(Float64(data=stats.predicted_return))
                self.pub_disagreement.publish(Float64(data=stats.disagreement))
                self.pub_markers.publish(self._markers(result, stamp))
            self._log_note(cmd)
            entered_hold = cmd.source == HOLD and not self._holding
            self._holding = cmd.source == HOLD
        if entered_hold:
            self.diagnostics.publish()  # the ERROR goes out now, not at the next period

    def _targets(self, cmd: Command) -> tuple[np.ndarray, np.ndarray]:
        """(joint targets, normalized action), both in ``joints`` order."""
        if cmd.source == HOLD:
            held = self._last_targets
            if held is not None and held[0] == cmd.episode_id:
                targets = held[1]
            else:  # nothing commanded yet this episode: hold the measured pose
                episode, joints = self._newest_joints
                if episode != cmd.episode_id:
                    joints = None
                targets = (self.action_map.mid.copy() if joints is None
                           else np.clip(joints, self.action_map.low, self.action_map.high))
            return targets, self.action_map.to_normalized(targets)
        action = np.asarray(cmd.action, dtype=np.float64)[self._perm]
        return self.action_map.to_joint_targets(action), action

    def _planned_action(self, cmd: Command, action: np.ndarray, targets: np.ndarray,
                        stamp) -> tuple[PlannedAction, Any]:
        msg = PlannedAction(episode_id=cmd.episode_id, step=cmd.step,
                            joint_names=self.joints, action=action.tolist(),
                            joint_targets=targets.tolist())
        msg.header.stamp, msg.header.frame_id = stamp, self.frame
        plan = (action[None] if cmd.source == HOLD
                else np.asarray(cmd.plan, dtype=np.float64)[:, self._perm])
        msg.horizon, msg.action_dim = int(plan.shape[0]), int(plan.shape[1])
        msg.planned_actions = plan.ravel().tolist()
        stats = PlannerStats(planner=cmd.source, model_version=cmd.model_version,
                             plan_latency_ms=float(cmd.plan_latency_ms), fallback=cmd.fallback,
                             deadline_misses=cmd.deadline_misses, ticks=cmd.ticks,
                             num_samples=cmd.num_samples, horizon=cmd.horizon)
        result = cmd.result
        if result is not None:
            states = result.predicted_states.detach().cpu().numpy().astype(np.float64)
            msg.object_names = [name for name, _ in self._objects]
            if self._objects:
                positions = np.stack([states[1:, s] for _, s in self._objects], axis=1)
                msg.predicted_object_positions = positions.ravel().tolist()
            stats.predicted_return = float(result.predicted_return)
            stats.disagreement = float(result.disagreement)
        msg.stats = stats
        return msg, result

    def _markers(self, result, stamp) -> MarkerArray:
        """One LINE_STRIP per object along the ensemble-mean prediction of the plan."""
        states = result.predicted_states.detach().cpu().numpy().astype(np.float64)
        markers = []
        colours = ((1.0, 0.5, 0.0), (0.0, 0.7, 1.0), (0.6, 1.0, 0.2))
        for i, (name, s) in enumerate(self._objects):
            m = Marker(ns=f"plan/{name}", id=i, type=Marker.LINE_STRIP, action=Marker.ADD)
            m.header.frame_id, m.header.stamp = self.frame, stamp
            m.pose.orientation.w = 1.0
            m.scale.x = 0.004
            m.color.r, m.color.g, m.color.b = colours[i % len(colours)]
            m.color.a = 1.0
            m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in states[:, s]]
            markers.append(m)
        return MarkerArray(markers=markers)

    def _log_note(self, cmd: Command) -> None:
        note = "" if cmd.fallback else cmd.note
        if note != self._logged_note:
            if note:
                self.get_logger().warning(note)
            elif self._logged_note:
                self.get_logger().info(f"acting again with {cmd.source}")
            self._logged_note = note

    # ----- status -------------------------------------------------------------------------
    def _health(self):
        status = self.loop.status()
        now = time.monotonic()
        misses = int(status["deadline_misses"])
        self._misses.append((now, misses))
        while len(self._misses) > 1 and now - self._misses[0][0] > MISS_WINDOW_S:
            self._misses.popleft()
        recent = misses - self._misses[0][1]
        values = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in status.items()}
        values.update(mode="lockstep" if self.lockstep else "realtime",
                      recent_deadline_misses=recent, rejected_models=self.rejected_models)
        if status["state"] == "holding":
            return ERROR, f"stale state: {status['note']}", values
        if recent > 0:
            return WARN, f"{recent} deadline misses in the last {MISS_WINDOW_S:.0f} s", values
        return OK, f"{status['state']} (model version {status['model_version']})", values

    def _on_get_status(self, _req, res):
        status = self.loop.status()
        res.node = self.get_fully_qualified_name()
        res.state = status["state"]
        res.model_version = int(status["model_version"])
        res.values = [KeyValue(key=k, value=str(v)) for k, v in status.items()
                      if k not in ("state", "model_version")]
        res.values.append(KeyValue(key="mode", value="lockstep" if self.lockstep else "realtime"))
        res.values.append(KeyValue(key="rejected_models", value=str(self.rejected_models)))
        return res


def main() -> int:
    tune_malloc_for_planning()
    # The planning thread takes the GIL back after every torch op; with the default 5 ms
    # switch interval a tick callback can wait up to that long at each of its own hand-overs
    # (publishes). 1 ms keeps a tick to a few ms while a plan runs (p99 15 -> 9 ms here).
    sys.setswitchinterval(0.001)
    # One executor thread: the planning runs in the loop's own thread, every callback here is
    # short (a model is deserialized in ~10-40 ms), and rclpy's multi-threaded executor made
    # the 10 Hz tick late by up to 0.5 s under load (see run_node).
    return run_node(MpcPlannerNode, num_threads=1)
