"""``mpc_planner``: PDDM's MPC on the newest learned model, as a ROS 2 node.

A thin adapter around :class:`mbrl_ros.core.planning.loop.PlanningLoop` (docs/node_graph.md,
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
from typing import Any

import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.timer import Timer
from std_msgs.msg import Float64, Float64MultiArray
from visualization_msgs.msg import MarkerArray

from mbrl_ros.core.models.model_check import ModelRejected
from mbrl_ros.core.planners import tune_malloc_for_planning
from mbrl_ros.core.planning.loop import PlanningLoop
from mbrl_ros.core.planning.loop_io import HOLD, Command
from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import Diagnostics
from mbrl_ros.nodes.parameters import ParameterSet
from mbrl_ros.nodes.planner_messages import (
    model_from_message,
    object_position_fields,
    plan_markers,
    planned_action_message,
    state_input,
)
from mbrl_ros.nodes.planner_params import (
    INFERENCE_DTYPES,
    PARAM_CHECKS,
    PARAMS,
    exploration_config,
    planner_settings,
    sampling_note,
)
from mbrl_ros.nodes.planner_schedules import GoalSchedules
from mbrl_ros.nodes.planner_status import RecentMisses, health_report, status_values
from mbrl_ros.nodes.planner_targets import JointTargets
from mbrl_ros.nodes.runtime import cap_torch_threads, run_node
from mbrl_ros.nodes.task_params import task_from_params
from mbrl_ros.srv import GetStatus


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
        self.targets = JointTargets(p, self.task)
        self._objects = object_position_fields(self.task)
        self._expected_layout = self.task.layout.to_msg_fields()
        device = p["device"]
        self._device_problem = ""
        if device == "cuda" and not torch.cuda.is_available():
            self._device_problem = "device 'cuda' requested but CUDA is not available; using cpu"
            device = "cpu"
        self.device = device
        self._settings = planner_settings({**p, "device": device})

        self._lock = threading.Lock()  # publishing and the command bookkeeping below
        self._logged_note = ""
        self._holding = False
        self.schedules = GoalSchedules()
        self._misses = RecentMisses()
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
        waiting = self.schedules.add(int(msg.episode_id), goals, int(msg.episode_length))
        # The estimator assigns a state to episode N only after it has N's schedule, but the
        # planner may get that state before the schedule itself: act on it now.
        if waiting is not None and waiting.episode_id == msg.episode_id:
            self._on_state(waiting)

    def _on_state(self, msg: TaskState) -> None:
        if not self.params["act_without_schedule"] and self.schedules.wait_for_schedule(msg):
            return
        try:
            obs = state_input(msg, self.task, self._expected_layout,
                              self.schedules.get(int(msg.episode_id)), self._end_at_drop)
        except ValueError as exc:
            self.diagnostics.problem("task_state", f"{exc}; state ignored")
            return
        self.targets.observe(obs)
        if self.lockstep:
            command = self.loop.on_state(obs)
            if command is not None:
                self._publish(command)
        else:
            self.loop.observe(obs)

    def _on_model(self, msg: ModelUpdate) -> None:
        current = self.loop.accepted_version
        try:
            model = model_from_message(msg, self.task, self.device)
        except ModelRejected as exc:
            self.rejected_models += 1
            self.diagnostics.problem("model_update", f"model version {msg.version} rejected: "
                                     f"{exc}; keeping model version {current}")
            return
        if msg.version <= current:
            self.get_logger().warning(f"model version {msg.version} is not newer than "
                                      f"{current}; using it anyway (a restarted trainer?)")
        model.set_inference_dtype(INFERENCE_DTYPES[self.params["inference_dtype"]])
        note = sampling_note(self.params, model)
        if note is not None:
            self.get_logger().warning(f"model version {msg.version}: {note}")
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
            targets, action = self.targets.for_command(cmd)
            self.pub_command.publish(Float64MultiArray(data=targets.tolist()))
            self.targets.last_targets = (cmd.episode_id, targets)
            stamp = self.get_clock().now().to_msg()
            planned = planned_action_message(cmd, action, targets, self.targets.joints,
                                             self.targets.perm, self._objects, self.frame, stamp)
            self.pub_planned.publish(planned)
            stats = planned.stats
            self.pub_misses.publish(Float64(data=float(stats.deadline_misses)))
            self.pub_version.publish(Float64(data=float(stats.model_version)))
            if cmd.result is not None:
                self.pub_latency.publish(Float64(data=stats.plan_latency_ms))
                self.pub_return.publish(Float64(data=stats.predicted_return))
                self.pub_disagreement.publish(Float64(data=stats.disagreement))
                self.pub_markers.publish(plan_markers(cmd.result, self._objects, self.frame,
                                                      stamp))
            self._log_note(cmd)
            entered_hold = cmd.source == HOLD and not self._holding
            self._holding = cmd.source == HOLD
        if entered_hold:
            self.diagnostics.publish()  # the ERROR goes out now, not at the next period

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
        recent = self._misses.update(int(status["deadline_misses"]), time.monotonic())
        return health_report(status, "lockstep" if self.lockstep else "realtime", recent,
                             self.rejected_models)

    def _on_get_status(self, _req, res):
        status = self.loop.status()
        res.node = self.get_fully_qualified_name()
        res.state = status["state"]
        res.model_version = int(status["model_version"])
        res.values = status_values(status, "lockstep" if self.lockstep else "realtime",
                                   self.rejected_models)
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
