"""``dynamics_trainer``: records transitions from the live stream and trains the ensemble.

Recording (docs/node_graph.md, protocol step 5): ``task_state`` and ``planned_action`` feed
a :class:`~mbrl_ros.core.data.recorder.TransitionRecorder`; every finished episode goes to the
durable :class:`~mbrl_ros.core.data.dataset.EpisodeDataset` at once, which a restarted trainer
loads again. ``goal_schedule`` tells the recorder each episode's length (a 30-step random
rollout is stored when its state 30 arrives, not when the next episode starts).

Training: a goal of the ``~/train`` action (``trainer_action.py``) starts a background job
on a snapshot of the dataset, with feedback every epoch, cancel, and a typed result. The
job thread lowers its own priority (``niceness``) and caps torch's threads
(``train_threads``) so the planner keeps the cores; recording goes on meanwhile. A model
that validates (finite, z-scored validation MSE within ``max_val_loss``) gets the next
version, is checkpointed and published on ``model_update`` (reliable, transient local:
a planner that starts late still gets it). Every job that is not cancelled ends with
``~/metrics`` and the numeric topics, accepted or not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Float64

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.models.model_store import ModelStore, StoredModel
from mbrl_ros.core.validation import finite_vector
from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState, TrainingMetrics
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.episode_record import stream_from_request
from mbrl_ros.nodes.parameters import ParameterSet
from mbrl_ros.nodes.runtime import cap_torch_threads, run_node
from mbrl_ros.nodes.task_params import task_from_params
from mbrl_ros.nodes.trainer_action import TrainAction
from mbrl_ros.nodes.trainer_jobs import TrainingJobs
from mbrl_ros.nodes.trainer_messages import (
    NAN,
    job_summary,
    model_update_message,
    training_metrics_message,
)
from mbrl_ros.nodes.trainer_params import PARAM_CHECKS, PARAMS
from mbrl_ros.nodes.trainer_recording import EpisodeRecording
from mbrl_ros.nodes.trainer_status import TrainerLoopStatus
from mbrl_ros.srv import GetStatus, StoreEpisode

ACTION_TOLERANCE = 1e-6
RECORD_DEPTH = 200


class DynamicsTrainerNode(Node):
    """Adapter between the ROS stream and the recorder, dataset and retraining core."""

    def __init__(self) -> None:
        super().__init__("dynamics_trainer")
        self.params = ParameterSet(self, PARAMS, checks=PARAM_CHECKS)
        p = self.params.snapshot()
        cap_torch_threads(p["train_threads"])
        self.task = task_from_params(p)
        self.layout_fields = self.task.layout.to_msg_fields()
        self.state_fields = list(self.task.layout.names)
        dataset_dir = Path(os.path.expanduser(p["dataset_dir"]))
        models_dir = (Path(os.path.expanduser(p["models_dir"])) if p["models_dir"]
                      else dataset_dir.parent / "models")
        self.dataset = EpisodeDataset(dataset_dir)
        dims = (self.task.state_dim, self.task.action_dim)
        if self.dataset.dims not in (None, dims):
            message = (f"dataset {dataset_dir} holds (state, action) dims {self.dataset.dims}, "
                       f"task '{self.task.name}' needs {dims}: use another dataset_dir")
            self.get_logger().error(message)
            raise RuntimeError(message)
        self.store = ModelStore(models_dir, keep=p["keep_models"])
        # Problems go to the diagnostics created below (nothing is reported before).
        self.recording = EpisodeRecording(
            self.task, self.dataset, p["action_grace_s"], self.get_logger(),
            lambda kind, text: self.diagnostics.problem(kind, text), self._publish_count)
        self.stale_states = 0
        self.jobs = TrainingJobs(
            self.task, self.dataset, self.store, self.get_logger(),
            lambda kind, text: self.diagnostics.problem(kind, text), self._on_epoch,
            self._on_job_finished, lambda job_id, why: self.train.on_cancelled(job_id, why))

        record = MutuallyExclusiveCallbackGroup()
        serve = ReentrantCallbackGroup()
        self.pub_model = self.create_publisher(ModelUpdate, "model_update", conv.LATCHED_QOS)
        self.pub_metrics = self.create_publisher(TrainingMetrics, "~/metrics", 10)
        self.pub_numbers = {name: self.create_publisher(Float64, f"~/{name}", 10) for name in (
            "train_loss", "val_loss", "val_one_step_mse", "val_disagreement", "num_transitions")}
        # A recorder must not lose samples while a disk write delays its callbacks: a deeper
        # queue than the graph's default 10 (depth does not affect QoS compatibility).
        self._state_sub = self.create_subscription(
            TaskState, "task_state", self._on_task_state, RECORD_DEPTH, callback_group=record)
        self._action_sub = self.create_subscription(
            PlannedAction, "planned_action", self._on_action, RECORD_DEPTH, callback_group=record)
        self.create_subscription(GoalSchedule, "goal_schedule", self._on_schedule,
                                 conv.SCHEDULE_SUB_QOS,
                                 callback_group=record)
        # Wall-clock timers: a paused lockstep clock (sim time) must not stop the bookkeeping.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.1, self.recording.poll, callback_group=record, clock=steady)
        # With the recorder's callbacks: a backfill and a live store never interleave.
        self.create_service(StoreEpisode, "~/store_episode", self._on_store_episode,
                            callback_group=record)
        self.train = TrainAction(self, self.jobs, self.params.snapshot,
                                 lambda kind, text: self.diagnostics.problem(kind, text), serve)
        self.create_service(GetStatus, "~/get_status", self._on_status, callback_group=serve)
        self.create_timer(1.0, self._publish_count, callback_group=serve, clock=steady)
        self.diagnostics = Diagnostics(self, self._health, hardware_id="trainer")
        self.params.report_to(self.diagnostics)

        self._republish_checkpoint()
        self._report_quarantined()
        self.get_logger().info(
            f"recording '{self.task.name}' transitions into {dataset_dir} "
            f"({self.dataset.num_episodes} episodes, {self.dataset.num_transitions} "
            f"transitions on disk); models in {models_dir}, newest version {self.jobs.version}")
        self._publish_count()

    # ----- recording ----------------------------------------------------------------------
    def _on_task_state(self, msg: TaskState) -> None:
        try:
            if msg.task and msg.task != self.task.name:
                raise ValueError(f"task '{msg.task}', this trainer records '{self.task.name}'")
            state = finite_vector(msg.state, self.task.state_dim, "TaskState.state")
            goal = finite_vector(msg.goal, self.task.goal_dim, "TaskState.goal")
            layout = [(f.name, int(f.start), int(f.size)) for f in msg.layout]
            if layout and layout != self.layout_fields:
                raise ValueError(f"layout {layout} differs from the task's {self.layout_fields}")
        except ValueError as exc:
            self.diagnostics.problem("task_state", f"{exc}; state not recorded")
            return
        if msg.stale and self.params["skip_stale_states"]:
            self.stale_states += 1
            return
        stamp = conv.ns_from_time(msg.header.stamp) / conv.NS_PER_S
        self.recording.add_state(msg.episode_id, msg.step, state, stamp, goal)

    def _on_action(self, msg: PlannedAction) -> None:
        try:
            action = finite_vector(msg.action, self.task.action_dim, "PlannedAction.action")
            if np.abs(action).max() > 1.0 + ACTION_TOLERANCE:
                raise ValueError(f"action outside [-1, 1] (max |a| = {np.abs(action).max():.3g})")
        except ValueError as exc:
            self.diagnostics.problem("planned_action", f"{exc}; action not recorded")
            return
        self.recording.add_action(msg.episode_id, msg.step, np.clip(action, -1, 1),
                                  msg.stats.planner, msg.stats.model_version)

    def _on_schedule(self, msg: GoalSchedule) -> None:
        if msg.task and msg.task != self.task.name:
            self.diagnostics.problem("goal_schedule", f"task '{msg.task}', this trainer "
                                     f"records '{self.task.name}'; episode length ignored")
            return
        self.recording.set_episode_length(msg.episode_id, msg.episode_length)

    def _on_store_episode(self, req: StoreEpisode.Request, res: StoreEpisode.Response):
        """Store the transitions of an episode's stream (sent by the experiment manager)
        that the recorder missed; steps already stored are skipped."""
        episode_id = int(req.episode_id)
        try:
            if req.task != self.task.name:
                raise ValueError(f"task '{req.task}', this trainer records '{self.task.name}'")
            states, actions = stream_from_request(
                req, (self.task.state_dim, self.task.action_dim, self.task.goal_dim),
                self.params["skip_stale_states"], ACTION_TOLERANCE)
            open_episode = self.recording.open_episode
            if open_episode is not None and open_episode[0] == episode_id:
                res.success, res.busy = False, True
                res.message = f"episode {episode_id} is being recorded"
                return res
            episode, held = self.recording.backfill(episode_id, int(req.episode_length),
                                                    states, actions)
        except ValueError as exc:
            self.diagnostics.problem("store_episode", f"episode {episode_id}: {exc}; "
                                     "nothing stored")
            res.success, res.message = False, str(exc)
            return res
        res.already_held = held
        if episode is not None:
            before = self.dataset.num_transitions
            self.recording.store([episode])  # a failed write is kept and retried like a live one
            res.stored = self.dataset.num_transitions - before
        res.success = True
        res.message = f"episode {episode_id}: {res.stored} transitions stored, {held} held already"
        return res

    def _publish_count(self) -> None:
        if not self.context.ok():  # stored while shutting down: nobody to tell
            return
        count = float(self.dataset.num_transitions)
        self.pub_numbers["num_transitions"].publish(Float64(data=count))

    # ----- training -----------------------------------------------------------------------
    def _on_epoch(self, job_id: int, epoch: int, epochs: int, train_loss: float,
                  val_loss: float) -> None:
        """A job's progress (its thread): the numeric topics and the goal's feedback."""
        self.pub_numbers["train_loss"].publish(Float64(data=train_loss))
        self.pub_numbers["val_loss"].publish(Float64(data=val_loss))
        self.train.on_epoch(job_id, epoch, epochs, train_loss, val_loss)

    def _on_job_finished(self, job_id: int, message: str, m: dict[str, Any],
                         stored: StoredModel | None) -> None:
        """A job's end (its thread): the model if accepted, metrics, numbers, summary."""
        if stored is not None:
            self.pub_model.publish(self._model_message(stored))
        self.pub_metrics.publish(training_metrics_message(m))
        for name in ("train_loss", "val_loss", "val_one_step_mse", "val_disagreement"):
            self.pub_numbers[name].publish(Float64(data=float(m.get(name, NAN))))
        summary = job_summary(job_id, self.jobs.version, message, m)
        if m["accepted"]:
            self.get_logger().info(summary)
        else:
            self.get_logger().warning(summary)
        self.train.on_finished(job_id, message, m)  # after the model: its goal's result

    def _republish_checkpoint(self) -> None:
        stored = self.jobs.adopt_newest_checkpoint()
        if stored is None:
            return
        self.pub_model.publish(self._model_message(stored))
        self.get_logger().info(f"republished model version {stored.version} from {stored.path}")

    def _report_quarantined(self) -> None:
        """One diagnostics problem per unusable file found at start-up (moved to quarantine/;
        everything else loaded)."""
        for path in self.dataset.quarantined:
            self.diagnostics.problem("quarantined_file", f"unreadable episode file moved to "
                                     f"{path}; the other episodes loaded")
        for q in self.store.quarantined:
            self.diagnostics.problem("quarantined_file", f"unusable checkpoint {q.original.name} "
                                     f"moved to {q.path} ({q.reason}); older ones still load")

    def _model_message(self, stored: StoredModel) -> ModelUpdate:
        return model_update_message(stored, self.task.name, self.state_fields,
                                    self.get_clock().now().to_msg())

    # ----- status -------------------------------------------------------------------------
    def _on_status(self, _req: GetStatus.Request, res: GetStatus.Response):
        res.node = self.get_fully_qualified_name()  # e.g. /hand/dynamics_trainer
        res.state = "training" if self.jobs.training else "idle"
        res.model_version = self.jobs.current.version if self.jobs.current is not None else 0
        res.num_transitions = self.dataset.num_transitions
        res.num_episodes = self.dataset.num_episodes
        res.values = [KeyValue(key=str(k), value=str(v)) for k, v in self._status_values().items()]
        return res

    def _status_values(self) -> dict[str, Any]:
        counts, open_episode = self.recording.status()
        values: dict[str, Any] = {
            "task": self.task.name, "dataset_dir": self.dataset.root,
            "models_dir": self.store.root, "open_episode": "none" if open_episode is None else
            f"{open_episode[0]} from step {open_episode[1]} ({open_episode[2]} states)",
            "write_failures": self.recording.write_failures,
            "stale_states_skipped": self.stale_states,
            "state_publishers": self._state_sub.get_publisher_count(),  # matched: not yet = lost
            "quarantined_files": len(self.dataset.quarantined) + len(self.store.quarantined)}
        values.update({f"rejected_{k}": n for k, n in dict(self.diagnostics.problems).items()})
        values.update({f"last_job_{k}": v for k, v in self.jobs.last_job.items()})
        values.update({f"recorder_{k}": v for k, v in sorted(counts.items())})
        values.update(TrainerLoopStatus(  # typed: the experiment manager reads it
            job_id=self.jobs.job_id, max_episode_id=self.recording.max_episode_id,
            open_episode_id=-1 if open_episode is None else open_episode[0],
            unsaved_episodes=len(self.recording.unsaved), recorder_states=counts.get("states", 0),
            action_publishers=self._action_sub.get_publisher_count(),
            train_refusal=self.train.refusal).values())
        return values

    def _health(self):
        values = self._status_values()
        values.update(state="training" if self.jobs.training else "idle",
                      model_version=self.jobs.version, episodes=self.dataset.num_episodes,
                      transitions=self.dataset.num_transitions)
        if self.recording.unsaved:
            return ERROR, f"{len(self.recording.unsaved)} episode(s) not written to disk", values
        if self.jobs.last_job and not self.jobs.last_job["accepted"]:
            return WARN, f"last model rejected: {self.jobs.last_job['message']}", values
        state = "training" if self.jobs.training else "recording"
        return OK, (f"{state}: {self.dataset.num_transitions} transitions, model version "
                    f"{self.jobs.version}"), values

    def close(self) -> None:
        """Stop a running job and store the episode being recorded (nothing is lost)."""
        self.jobs.close()
        self.recording.flush()


def main() -> int:
    return run_node(DynamicsTrainerNode)
