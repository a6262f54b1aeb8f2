"""One episode through the stack, as the experiment manager runs it (docs/node_graph.md).

Set the planner's policy, reset the simulator, publish the goal schedule, then collect the
episode from the topics: ``task_state`` (one state per step; a drop ends the episode there
and the shortened schedule goes out again) and ``planned_action`` (one action per step).
A node that stops during the episode shows as a stall (no fresh state or command for
``stall_timeout_s``) or, for the simulator, as object readings of another episode or a
step count that went back: the episode is interrupted (``EpisodeInterrupted``) and what ran
of it goes to the trainer's backlog. Callbacks only record; the worker thread waits.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import torch
from rcl_interfaces.srv import GetParameters
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from mbrl_ros.core.experiment import EpisodeOutcome, Step
from mbrl_ros.core.tasks import Task
from mbrl_ros.msg import GoalSchedule, ObjectStates, PlannedAction, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.episode_record import EpisodeRecord, SeenState
from mbrl_ros.nodes.patient_calls import CallFailed, PatientCaller
from mbrl_ros.nodes.planner_link import PlannerLink
from mbrl_ros.nodes.trainer_link import TrainerLink
from mbrl_ros.srv import ResetEpisode


class EpisodeInterrupted(RuntimeError):
    """A node of the loop stopped during the episode: it is run again."""


class EpisodeRunner:
    """Runs episodes of ``task`` through the stack for the experiment node's worker."""

    def __init__(self, node: Node, task: Task, calls: PatientCaller, trainer: TrainerLink,
                 planner: PlannerLink, estimator: str, group: CallbackGroup,
                 end_at_drop: bool) -> None:
        self.node, self.task, self.calls = node, task, calls
        self.trainer, self.planner = trainer, planner
        self.log = node.get_logger()
        self.end_at_drop = end_at_drop
        self.pub_schedule = node.create_publisher(GoalSchedule, "goal_schedule",
                                                  conv.LATCHED_QOS)
        node.create_subscription(TaskState, "task_state", self._on_state, 50,
                                 callback_group=group)
        node.create_subscription(PlannedAction, "planned_action", self._on_action, 50,
                                 callback_group=group)
        node.create_subscription(ObjectStates, "object_states", self._on_objects, 10,
                                 callback_group=group)
        self.reset_client = node.create_client(ResetEpisode, "reset_episode",
                                               callback_group=group)
        self.estimator_params = node.create_client(GetParameters,
                                                   f"{estimator}/get_parameters",
                                                   callback_group=group)
        self._lock = threading.Lock()
        self._episode: EpisodeRecord | None = None
        self.states_flow = threading.Event()  # a task state (of any episode) arrived

    # ----- callbacks: record only ---------------------------------------------------------
    def _on_state(self, msg: TaskState) -> None:
        self.states_flow.set()
        with self._lock:
            ep = self._episode
            if ep is None or msg.episode_id != ep.episode_id or msg.step > ep.length:
                return
            state = np.asarray(msg.state, dtype=np.float64)
            if state.shape != (self.task.state_dim,) or not np.all(np.isfinite(state)):
                self.log.warning(f"ignoring a malformed task state (step {msg.step})")
                return
            stamp = conv.ns_from_time(msg.header.stamp) / conv.NS_PER_S
            goal = np.asarray(msg.goal, dtype=np.float64)
            ep.add_state(msg.step, SeenState(state, goal, stamp, bool(msg.stale)),
                         time.monotonic())
            if (self.end_at_drop and not msg.stale and msg.step < ep.length
                    and goal.shape == (self.task.goal_dim,)
                    and self.task.terminates(torch.from_numpy(state), torch.from_numpy(goal))):
                self._end_episode_at(ep, msg.step)

    def _end_episode_at(self, ep: EpisodeRecord, step: int) -> None:
        """The episode ends at state ``step`` (lock held): every node gets the schedule
        again with that length (no command at or after it, the recorder completes it)."""
        ep.length = step
        ep.done.set()
        if ep.schedule is not None:
            short = ep.schedule
            short.episode_length = step
            short.goals = short.goals[: (step + 1) * self.task.goal_dim]
            self.pub_schedule.publish(short)
        self.log.info(f"episode {ep.episode_id}: dropped at step {step}, ended there")

    def _on_action(self, msg: PlannedAction) -> None:
        with self._lock:
            self.planner.note_ticks(msg.stats.ticks)
            ep = self._episode
            if ep is not None and msg.episode_id == ep.episode_id and msg.step < ep.length:
                ep.add_action(msg, time.monotonic())

    def _on_objects(self, msg: ObjectStates) -> None:
        """A restarted (or self-reset) simulator shows in its object readings: another
        episode id, or a step count that went back. A tracker without episode ids sends 0
        and is not checked."""
        with self._lock:
            ep = self._episode
            if (ep is None or ep.t0_ns is None or ep.problem or msg.episode_id == 0
                    or conv.ns_from_time(msg.header.stamp) < ep.t0_ns):
                return
            if msg.episode_id != ep.episode_id:
                ep.problem = (f"the simulator now reports episode {msg.episode_id} (it "
                              "restarted, or someone else reset it)")
            elif msg.step < ep.object_step:
                ep.problem = (f"the simulator's step went back from {ep.object_step} to "
                              f"{msg.step} (it restarted or reset itself)")
            else:
                ep.object_step = msg.step

    # ----- the worker's side --------------------------------------------------------------
    def wait_for_nodes(self) -> None:
        """After an interruption: the estimator and the planner answer again (a respawned
        one is up). The simulator answers the next reset; the trainer is not needed."""
        self.calls.call(self.estimator_params, GetParameters.Request(names=["task"]),
                        self.calls.startup_timeout_s, "wait for the state estimator")
        self.calls.status(self.planner.status_client)

    def run(self, episode_id: int, step: Step, seed: int, model_version: int,
            p: dict[str, Any]) -> EpisodeOutcome:
        """Run one episode of ``step.policy`` with seed ``seed``; ``p`` the node's
        parameters (timeouts)."""
        self.trainer.flush_backlog()
        # Every episode: a respawned planner starts with the YAML's policy and must have the
        # model before an MPC episode starts.
        policy = "plan" if step.policy == "mpc" else "explore"
        self.planner.set_policy(policy)
        if step.policy == "mpc" and model_version > 0:
            self.calls.wait(lambda: self.planner.loaded() >= model_version,
                            p["startup_timeout_s"], f"the planner to load model v{model_version}")
        self.planner.restarted.clear()
        length = self.task.episode_length
        record = EpisodeRecord(episode_id, length)
        with self._lock:
            self._episode = record
        start = time.monotonic()
        try:
            res = self.calls.call(self.reset_client, ResetEpisode.Request(
                seed=seed % 2**32, task=self.task.name, episode_id=episode_id),
                p["startup_timeout_s"], "reset the simulator")
            if not res.success:
                raise CallFailed(f"the simulator refused the reset: {res.message}")
            goals = self.task.episode_goals(seed, length + 1)
            record.schedule = GoalSchedule(task=self.task.name, episode_id=episode_id,
                                           episode_length=length, goal_dim=self.task.goal_dim,
                                           goals=goals.double().flatten().tolist())
            record.schedule.header.stamp = res.first_observation_stamp
            record.schedule.header.frame_id = self.task.goal_frame
            with self._lock:
                record.t0_ns = conv.ns_from_time(res.first_observation_stamp)
                record.started = time.monotonic()
            self.pub_schedule.publish(record.schedule)
            self._watch(record, policy, p)
            # The last action can trail the last state; a lost sample is resent within 3 s.
            # One publisher's samples arrive in order, so a gap before the newest action is
            # a step the planner skipped (realtime: two states within one tick), not a
            # sample on its way: only the last action is waited for.
            try:
                self.calls.wait(lambda: max(record.actions, default=-1) >= record.length - 1,
                                3.5, "")
            except CallFailed:
                pass
        except EpisodeInterrupted:
            with self._lock:  # what ran of it is data too; not across a simulator restart
                request = None if record.problem else record.store_request(self.task.name)
            if request is not None and request.state_steps:
                self.trainer.backlog.add(request)
            raise
        finally:
            with self._lock:
                self._episode = None
        # The callbacks no longer write to the record (it is not the current episode).
        missing, missing_actions = record.missing()
        if missing or missing_actions:
            self.log.warning(f"episode {episode_id}: no state for steps {missing[:10]}, no "
                             f"action for {missing_actions[:10]}")
        states, actions = record.arrays(self.task.state_dim, self.task.action_dim)
        transitions = self.trainer.confirm_episode(record)
        latencies = [a.stats.plan_latency_ms for a in record.actions.values()
                     if not a.stats.fallback and a.stats.planner not in ("exploration", "hold")]
        return EpisodeOutcome(
            episode_id=episode_id, seed=seed, policy=step.policy, states=states,
            actions=actions, goals=goals[: record.length + 1].numpy(),  # a drop ends it early
            transitions=transitions, plan_ms=latencies,
            misses=sum(a.stats.fallback for a in record.actions.values()),
            model_version=model_version if step.policy == "mpc" else 0,
            wall_s=time.monotonic() - start)

    def _watch(self, record: EpisodeRecord, policy: str, p: dict[str, Any]) -> None:
        """Wait for the episode's last state. EpisodeInterrupted when a node of the loop
        stopped (no fresh state or no command for ``stall_timeout_s``) or the simulator
        restarted; a restarted planner gets its policy again."""
        stall = p["stall_timeout_s"]
        deadline = record.started + p["episode_timeout_s"]
        while not record.done.wait(0.05):
            if self.calls.stop.is_set():
                raise CallFailed("stopped")
            now = time.monotonic()
            with self._lock:
                problem = record.stall(now, stall)
            if problem:
                raise EpisodeInterrupted(problem)
            if now > deadline:
                raise CallFailed(f"episode {record.episode_id} did not finish in "
                                 f"{p['episode_timeout_s']} s ({len(record.states)} states)")
            if self.planner.restarted.is_set():
                self.planner.restarted.clear()
                self.log.warning("the planner restarted: setting its policy again")
                self.planner.set_policy(policy)
