"""The ``mpc_planner``'s message conversions: a ``TaskState`` into the loop's
:class:`~mbrl_ros.core.planning.loop_io.StateInput`, a ``ModelUpdate`` into a checked model, and
a command into its ``PlannedAction`` record and the plan's markers (the objects' predicted
paths)."""

from __future__ import annotations

import time

import numpy as np
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.model_check import load_checked_model
from mbrl_ros.core.planners import PlanResult
from mbrl_ros.core.planning.loop_io import HOLD, Command, StateInput
from mbrl_ros.core.tasks import Task
from mbrl_ros.core.validation import finite_vector
from mbrl_ros.msg import ModelUpdate, PlannedAction, PlannerStats, TaskState

#: ``(object name, slice)`` of the layout's object positions: see object_position_fields.
ObjectFields = list[tuple[str, slice]]


def object_position_fields(task: Task) -> ObjectFields:
    """``(object name, slice)`` of every ``<object>_pos`` field (3 values) of the layout."""
    return [(name[: -len("_pos")], task.layout.slice(name)) for name, size in task.layout.fields
            if name.endswith("_pos") and size == 3]


def state_input(msg: TaskState, task: Task, expected_layout: list[tuple[str, int, int]],
                schedule: tuple[np.ndarray, int] | None, end_at_drop: bool) -> StateInput:
    """A validated StateInput for ``msg``; ValueError naming the problem. ``schedule``: the
    episode's (goals, length), or None (the message's own goal, no known length);
    ``end_at_drop``: a terminal state ends the episode (no command for it)."""
    if msg.task and msg.task != task.name:
        raise ValueError(f"state of task '{msg.task}', planning '{task.name}'")
    layout = [(f.name, int(f.start), int(f.size)) for f in msg.layout]
    if layout and layout != expected_layout:
        raise ValueError(f"state layout {layout} differs from the task's "
                         f"{expected_layout}")
    state = finite_vector(msg.state, task.state_dim, "TaskState.state")
    if schedule is not None:
        goals, length = schedule
        start = int(msg.step) + 1
    else:
        goals = finite_vector(msg.goal, task.goal_dim, "TaskState.goal")[None]
        length, start = 0, 0
    goal = torch.as_tensor(goals[min(int(msg.step), len(goals) - 1)])
    if end_at_drop and msg.step > 0 and task.terminates(torch.from_numpy(state), goal):
        length = int(msg.step)  # the episode ended at this state: no command for it
    return StateInput(episode_id=int(msg.episode_id), step=int(msg.step), state=state,
                      goals=goals, goal_start=start, episode_length=length,
                      stale=bool(msg.stale), received=time.monotonic())


def model_from_message(msg: ModelUpdate, task: Task, device: str) -> EnsembleDynamics:
    """The model ``msg`` carries, checked against its format, checksum and ``task`` and
    loaded on ``device``; ModelRejected naming the problem."""
    return load_checked_model(
        bytes(msg.weights), format_version=int(msg.format_version),
        supported_format=ModelUpdate.FORMAT_VERSION, expected_checksum=msg.checksum,
        task_name=msg.task, state_fields=list(msg.state_fields), task=task,
        device=device)


def planned_action_message(cmd: Command, action: np.ndarray, targets: np.ndarray,
                           joints: list[str], perm: np.ndarray, objects: ObjectFields,
                           frame: str, stamp: Time) -> PlannedAction:
    """The ``PlannedAction`` record of ``cmd``: ``action`` and joint ``targets`` in
    ``joints`` order (``perm``: joints order -> robot order), the plan, the statistics and,
    for a fresh plan, the ``objects``' predicted positions."""
    msg = PlannedAction(episode_id=cmd.episode_id, step=cmd.step,
                        joint_names=joints, action=action.tolist(),
                        joint_targets=targets.tolist())
    msg.header.stamp, msg.header.frame_id = stamp, frame
    plan = (action[None] if cmd.source == HOLD
            else np.asarray(cmd.plan, dtype=np.float64)[:, perm])
    msg.horizon, msg.action_dim = int(plan.shape[0]), int(plan.shape[1])
    msg.planned_actions = plan.ravel().tolist()
    stats = PlannerStats(planner=cmd.source, model_version=cmd.model_version,
                         plan_latency_ms=float(cmd.plan_latency_ms), fallback=cmd.fallback,
                         deadline_misses=cmd.deadline_misses, ticks=cmd.ticks,
                         num_samples=cmd.num_samples, horizon=cmd.horizon)
    result = cmd.result
    if result is not None:
        states = result.predicted_states.detach().cpu().numpy().astype(np.float64)
        msg.object_names = [name for name, _ in objects]
        if objects:
            positions = np.stack([states[1:, s] for _, s in objects], axis=1)
            msg.predicted_object_positions = positions.ravel().tolist()
        stats.predicted_return = float(result.predicted_return)
        stats.disagreement = float(result.disagreement)
    msg.stats = stats
    return msg


def plan_markers(result: PlanResult, objects: ObjectFields, frame: str,
                 stamp: Time) -> MarkerArray:
    """One LINE_STRIP per object along the ensemble-mean prediction of the plan."""
    states = result.predicted_states.detach().cpu().numpy().astype(np.float64)
    markers = []
    colours = ((1.0, 0.5, 0.0), (0.0, 0.7, 1.0), (0.6, 1.0, 0.2))
    for i, (name, s) in enumerate(objects):
        m = Marker(ns=f"plan/{name}", id=i, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.header.frame_id, m.header.stamp = frame, stamp
        m.pose.orientation.w = 1.0
        m.scale.x = 0.004
        m.color.r, m.color.g, m.color.b = colours[i % len(colours)]
        m.color.a = 1.0
        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in states[:, s]]
        markers.append(m)
    return MarkerArray(markers=markers)
