"""``dynamics_trainer``: records transitions from the live stream and trains the ensemble.

Recording (docs/node_graph.md, protocol step 5): ``task_state`` and ``planned_action`` feed
a :class:`~mbrl_ros.core.recorder.TransitionRecorder`; every finished episode goes to the
durable :class:`~mbrl_ros.core.dataset.EpisodeDataset` at once, which a restarted trainer
loads again. ``goal_schedule`` tells the recorder each episode's length (a 30-step random
rollout is stored when its state 30 arrives, not when the next episode starts).

Training: ``~/train`` starts a background job on a snapshot of the dataset and returns at
once. The job thread lowers its own priority (``niceness``) and caps torch's threads
(``train_threads``) so the planner keeps the cores; recording goes on meanwhile. A model
that validates (finite, z-scored validation MSE within ``max_val_loss``) gets the next
version, is checkpointed and published on ``model_update`` (reliable, transient local:
a planner that starts late still gets it). Every job ends with ``~/metrics`` and the
numeric topics, accepted or not.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Float64

from mbrl_ros.core.dataset import EpisodeDataset
from mbrl_ros.core.ensemble import ACTIVATIONS, EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.model_store import ModelStore, StoredModel
from mbrl_ros.core.recorder import (
    RecordedEpisode,
    TransitionRecorder,
    backfill_episode,
    task_reward_fn,
)
from mbrl_ros.core.retraining import RetrainOutcome, RetrainSettings, retrain
from mbrl_ros.core.serialization import model_from_bytes
from mbrl_ros.core.tasks import Task
from mbrl_ros.core.training import TrainConfig
from mbrl_ros.core.validation import finite_vector
from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState, TrainingMetrics
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from mbrl_ros.nodes.episode_record import stream_from_request
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import cap_torch_threads, run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.srv import GetStatus, StoreEpisode, TrainModel

PARAMS = [
    *TASK_PARAMS,
    Param("dataset_dir", "~/.ros/mbrl_ros/dataset", "directory of the durable episode "
          "dataset (one file per episode; loaded again on start)", read_only=True),
    Param("models_dir", "", "directory of accepted model checkpoints; empty = 'models' "
          "beside dataset_dir", read_only=True),
    Param("keep_models", 5, "newest checkpoints kept in models_dir", 1, 100000,
          read_only=True),
    Param("ensemble.members", 3, "ensemble size (PDDM 3)", 1, 100),
    # Start-up only: an integer array set at run time arrives as array.array, which the
    # parameter schema refuses.
    Param("ensemble.hidden", [250, 250], "hidden layer widths (PDDM 2 x 250)", read_only=True),
    Param("ensemble.activation", "relu", "hidden activation (PDDM relu)",
          choices=tuple(sorted(ACTIVATIONS))),
    Param("ensemble.probabilistic", False, "Gaussian members trained with NLL (PETS) "
          "instead of MSE (PDDM)"),
    Param("train.epochs", 40, "epochs per job when the request says 0 (PDDM 40)", 1, 100000),
    Param("train.batch_size", 512, "minibatch size (PDDM 512)", 1, 1000000),
    Param("train.lr", 1e-3, "Adam learning rate (PDDM 1e-3)", 1e-7, 1.0),
    Param("train.input_noise", 0.01, "std of Gaussian noise on z-scored inputs and targets "
          "(PDDM 1%)", 0.0, 10.0),
    Param("train.val_fraction", 0.1, "fraction of episodes held out for validation "
          "(PDDM 90/10)", 0.01, 0.9),
    Param("train.from_scratch", True, "re-initialize the weights each job (PDDM); false "
          "warm-starts from the newest model unless the request asks for scratch"),
    Param("train.ball_swap", True, "multiply the training data by the task's symmetries "
          "(Task.augmentation; Baoding: swap the identical balls, PDDM)"),
    Param("train.seed", 0, "seed of the episode split and the weight initialization",
          0, 2**31 - 1),
    Param("train.log_every", 10, "a progress log line every this many epochs", 1, 100000),
    Param("train_threads", 1, "torch CPU threads of a training job (the planner needs the "
          "other cores)", 1, 256),
    Param("niceness", 10, "nice value of the training thread (higher = lower priority "
          "than the planner)", 0, 19),
    Param("device", "cpu", "where to train", choices=("cpu", "cuda")),
    Param("max_val_loss", 2.0, "sanity bound on the validation MSE in z-scored units "
          "(predicting the mean change scores about 1; models on a few episodes score 1-2); "
          "a worse model is not published",
          1e-12, 1e12),
    Param("eval_horizon", 7, "open-loop validation horizon (PDDM plans 7 steps)", 1, 1000),
    Param("min_transitions", 100, "stored transitions needed before a job is accepted",
          1, 1000000000),
    Param("skip_stale_states", True, "do not record states the estimator flags stale "
          "(their objects are predictions, not measurements)"),
    Param("action_grace_s", 3.5, "wait this long (wall s) for an episode's missing action "
          "before storing it without that transition (a sample lost on a busy machine is "
          "resent within Fast DDS's 3 s heartbeat period)", 0.0, 60.0, read_only=True),
]

ACTION_TOLERANCE = 1e-6
RECORD_DEPTH = 200
WRITE_RETRY_S = 5.0
_NAN = float("nan")


def retrain_settings(task: Task, p: Mapping[str, Any], epochs: int = 0,
                     from_scratch: bool = False) -> RetrainSettings:
    """The core retraining settings the trainer's parameter values ``p`` describe
    (``epochs`` 0: the ``train.epochs`` parameter; ``from_scratch`` or ``train.from_scratch``)."""
    architecture = EnsembleConfig(
        state_dim=task.state_dim, action_dim=task.action_dim,
        num_members=p["ensemble.members"], hidden_sizes=tuple(p["ensemble.hidden"]),
        activation=p["ensemble.activation"], probabilistic=p["ensemble.probabilistic"])
    train = TrainConfig(
        lr=p["train.lr"], batch_size=p["train.batch_size"],
        epochs=epochs or p["train.epochs"], input_noise=p["train.input_noise"],
        from_scratch=from_scratch or p["train.from_scratch"],
        seed=p["train.seed"], device=p["device"], num_threads=p["train_threads"])
    augment = task.augmentation if p["train.ball_swap"] else None
    return RetrainSettings(
        architecture=architecture, train=train, val_fraction=p["train.val_fraction"],
        split_seed=p["train.seed"], augment=augment, eval_horizon=p["eval_horizon"],
        max_val_mse=p["max_val_loss"])


def _hidden_check(values: dict[str, Any]) -> str | None:
    hidden = values["ensemble.hidden"]
    if not hidden or not all(isinstance(h, int) and 1 <= h <= 100000 for h in hidden):
        return f"ensemble.hidden must be a non-empty list of widths in [1, 100000], got {hidden}"
    return None


class _Cancelled(Exception):
    """Raised inside a training job when the node shuts down."""


class DynamicsTrainerNode(Node):
    """Adapter between the ROS stream and the recorder, dataset and retraining core."""

    def __init__(self) -> None:
        super().__init__("dynamics_trainer")
        self.params = ParameterSet(self, PARAMS, checks=[check_task_params, _hidden_check])
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
        self._recorder_args = dict(
            state_dim=self.task.state_dim, action_dim=self.task.action_dim,
            goal_dim=self.task.goal_dim, default_length=self.task.episode_length,
            reward_fn=task_reward_fn(self.task))
        self.recorder = TransitionRecorder(**self._recorder_args,
                                           action_grace_s=p["action_grace_s"])
        self._rec_lock = threading.Lock()
        self._unsaved: list[RecordedEpisode] = []
        self._write_failures = 0
        self._retry_at = 0.0
        self.stale_states = 0
        # Newest stream episode id on disk: the experiment manager waits for it (and numbers
        # its episodes after it when it starts again).
        self.max_episode_id = max((int(self.dataset.episode_meta(i).get("episode_id", -1))
                                   for i in self.dataset.episode_ids), default=-1)

        self._job_lock = threading.Lock()
        self._job: threading.Thread | None = None
        self._job_id = 0
        self._cancel = threading.Event()
        self._last_job: dict[str, Any] = {}
        self._current: StoredModel | None = None
        self.version = self.store.newest_version

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
        self.create_timer(0.1, self._poll_recorder, callback_group=record, clock=steady)
        # With the recorder's callbacks: a backfill and a live store never interleave.
        self.create_service(StoreEpisode, "~/store_episode", self._on_store_episode,
                            callback_group=record)
        self.create_service(TrainModel, "~/train", self._on_train, callback_group=serve)
        self.create_service(GetStatus, "~/get_status", self._on_status, callback_group=serve)
        self.create_timer(1.0, self._publish_count, callback_group=serve, clock=steady)
        self.diagnostics = Diagnostics(self, self._health, hardware_id="trainer")
        self.params.report_to(self.diagnostics)

        self._republish_checkpoint()
        self._report_quarantined()
        self.get_logger().info(
            f"recording '{self.task.name}' transitions into {dataset_dir} "
            f"({self.dataset.num_episodes} episodes, {self.dataset.num_transitions} "
            f"transitions on disk); models in {models_dir}, newest version {self.version}")
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
        with self._rec_lock:
            finished = self.recorder.add_state(msg.episode_id, msg.step, state, stamp, goal)
        self._store(finished)

    def _on_action(self, msg: PlannedAction) -> None:
        try:
            action = finite_vector(msg.action, self.task.action_dim, "PlannedAction.action")
            if np.abs(action).max() > 1.0 + ACTION_TOLERANCE:
                raise ValueError(f"action outside [-1, 1] (max |a| = {np.abs(action).max():.3g})")
        except ValueError as exc:
            self.diagnostics.problem("planned_action", f"{exc}; action not recorded")
            return
        with self._rec_lock:
            finished = self.recorder.add_action(msg.episode_id, msg.step, np.clip(action, -1, 1),
                                                msg.stats.planner, msg.stats.model_version)
        self._store(finished)

    def _on_schedule(self, msg: GoalSchedule) -> None:
        if msg.task and msg.task != self.task.name:
            self.diagnostics.problem("goal_schedule", f"task '{msg.task}', this trainer "
                                     f"records '{self.task.name}'; episode length ignored")
            return
        with self._rec_lock:
            finished = self.recorder.set_episode_length(msg.episode_id, msg.episode_length)
        self._store(finished)

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
            with self._rec_lock:
                open_episode = self.recorder.open_episode
            if open_episode is not None and open_episode[0] == episode_id:
                res.success, res.busy = False, True
                res.message = f"episode {episode_id} is being recorded"
                return res
            episode, held = backfill_episode(self._recorder_args, episode_id,
                                             int(req.episode_length), states, actions,
                                             self.dataset.held_steps(episode_id))
        except ValueError as exc:
            self.diagnostics.problem("store_episode", f"episode {episode_id}: {exc}; "
                                     "nothing stored")
            res.success, res.message = False, str(exc)
            return res
        res.already_held = held
        if episode is not None:
            before = self.dataset.num_transitions
            self._store([episode])  # a failed write is kept and retried like a live one
            res.stored = self.dataset.num_transitions - before
        res.success = True
        res.message = f"episode {episode_id}: {res.stored} transitions stored, {held} held already"
        return res

    def _poll_recorder(self) -> None:
        with self._rec_lock:
            finished = self.recorder.poll()
        self._store(finished)

    def _store(self, episodes: list[RecordedEpisode]) -> None:
        """Append finished episodes durably; a failed write is retried with the next
        episode or after ``WRITE_RETRY_S``."""
        if not episodes and (not self._unsaved or time.monotonic() < self._retry_at):
            return
        pending, self._unsaved = [*self._unsaved, *episodes], []
        for i, episode in enumerate(pending):
            try:
                dataset_id = self.dataset.append_episode(**episode.dataset_arrays())
                self.max_episode_id = max(self.max_episode_id, int(episode.meta["episode_id"]))
            except OSError as exc:
                self._write_failures += 1
                self._unsaved = pending[i:]
                self._retry_at = time.monotonic() + WRITE_RETRY_S
                self.diagnostics.problem("dataset_write", f"{exc}; {len(self._unsaved)} "
                                         "episode(s) kept in memory, retried with the next")
                break
            except ValueError as exc:
                self.diagnostics.problem("episode", f"{exc}; episode not stored")
                continue
            meta = episode.meta
            self.get_logger().info(
                f"stored episode {meta['episode_id']} steps {meta['first_step']}.."
                f"{meta['last_step']} ({len(episode)} transitions, {meta['end']}, policy "
                f"'{meta['policy']}') as #{dataset_id}; dataset: "
                f"{self.dataset.num_transitions} transitions")
        self._publish_count()

    def _publish_count(self) -> None:
        if not self.context.ok():  # stored while shutting down: nobody to tell
            return
        count = float(self.dataset.num_transitions)
        self.pub_numbers["num_transitions"].publish(Float64(data=count))

    # ----- training -----------------------------------------------------------------------
    def _settings(self, p: dict[str, Any], req: TrainModel.Request) -> RetrainSettings:
        return retrain_settings(self.task, p, int(req.epochs), bool(req.from_scratch))

    def _on_train(self, req: TrainModel.Request, res: TrainModel.Response):
        p = self.params.snapshot()
        with self._job_lock:
            n, episodes = self.dataset.num_transitions, self.dataset.num_episodes
            if self._job is not None and self._job.is_alive():
                res.accepted, res.job_id = False, self._job_id
                res.message = f"job {self._job_id} is still running"
            elif n < p["min_transitions"] or episodes < 2:
                res.accepted = False
                res.message = (f"too little data: {n} transitions in {episodes} episodes "
                               f"(need {p['min_transitions']} in at least 2 episodes)")
            elif req.epochs > 1000000:
                res.accepted, res.message = False, f"epochs {req.epochs} above 1000000"
            elif p["device"] == "cuda" and not torch.cuda.is_available():
                res.accepted, res.message = False, "device 'cuda' requested, none available"
            else:
                settings = self._settings(p, req)
                self._job_id += 1
                res.accepted, res.job_id = True, self._job_id
                res.message = (f"job {self._job_id}: {settings.train.epochs} epochs on "
                               f"{n} transitions in {episodes} episodes")
                self._job = threading.Thread(
                    target=self._run_job, name=f"train-job-{self._job_id}", daemon=True,
                    args=(self._job_id, settings, p["niceness"], p["train.log_every"]))
                self._job.start()
        request = f"train request (from_scratch={req.from_scratch}, epochs={req.epochs})"
        # rclpy refuses different severities from one call site: one call per severity.
        if res.accepted:
            self.get_logger().info(f"{request} accepted: {res.message}")
        else:
            self.diagnostics.problem("train_request", f"{request} refused: {res.message}")
        return res

    def _run_job(self, job_id: int, settings: RetrainSettings, niceness: int,
                 log_every: int) -> None:
        """Body of the training thread (never runs on the executor)."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError as exc:
            self.get_logger().warning(f"job {job_id}: cannot set niceness {niceness}: {exc}")
        epochs = settings.train.epochs

        def progress(epoch: int, values: dict[str, Any]) -> None:
            if self._cancel.is_set():
                raise _Cancelled
            self.pub_numbers["train_loss"].publish(Float64(data=float(values["train_loss"])))
            val = float(values.get("val_loss", _NAN))
            self.pub_numbers["val_loss"].publish(Float64(data=val))
            if epoch % log_every == 0 or epoch == epochs:
                self.get_logger().info(f"job {job_id}: epoch {epoch}/{epochs} train loss "
                                       f"{values['train_loss']:.4g} val loss {val:.4g}")

        previous = None
        current = self._current
        if not settings.train.from_scratch and current is not None:
            previous, _ = model_from_bytes(current.data)
        try:
            outcome = retrain(self.dataset, settings, previous, progress)
        except _Cancelled:
            self.get_logger().info(f"job {job_id}: cancelled by shutdown")
            return
        except Exception as exc:  # a failed job must not take the node down
            self.diagnostics.problem("training", f"job {job_id} failed: {exc!r}")
            outcome = RetrainOutcome(False, f"failed: {exc!r}", None, {})
        self._finish_job(job_id, outcome)

    def _finish_job(self, job_id: int, outcome: RetrainOutcome) -> None:
        m = outcome.metrics
        if outcome.accepted and outcome.model is not None:
            version = max(self.version, self.store.newest_version) + 1
            m = {**m, "model_version": version, "accepted": True}
            stored = self._checkpoint(version, outcome.model, m)
            if stored is not None:
                self._current, self.version = stored, version
                self.pub_model.publish(self._model_message(stored))
            else:
                m["accepted"] = False
                outcome = RetrainOutcome(False, "checkpoint could not be written", None, m)
        else:
            m = {**m, "model_version": self.version, "accepted": False}
        self.pub_metrics.publish(self._metrics_message(m))
        for name in ("train_loss", "val_loss", "val_one_step_mse", "val_disagreement"):
            self.pub_numbers[name].publish(Float64(data=float(m.get(name, _NAN))))
        curve = ", ".join(f"{v:.3g}" for v in m.get("val_multi_step_mse", []))
        verdict = f"ACCEPTED as version {self.version}" if m["accepted"] else "REJECTED"
        summary = (f"job {job_id}: {verdict} ({outcome.message}); "
                   f"{m.get('num_transitions', 0)} transitions, "
                   f"{m.get('epochs', 0)} epochs in {m.get('duration_s', 0.0):.1f} s; "
                   f"train {m.get('train_loss', _NAN):.4g} val {m.get('val_loss', _NAN):.4g} "
                   f"(mean predictor {m.get('val_mean_predictor_mse', _NAN):.4g}) "
                   f"one-step {m.get('val_one_step_mse', _NAN):.4g} multi-step [{curve}] "
                   f"disagreement {m.get('val_disagreement', _NAN):.4g}")
        if m["accepted"]:
            self.get_logger().info(summary)
        else:
            self.get_logger().warning(summary)
        self._last_job = {"job_id": job_id, "accepted": m["accepted"],
                          "message": outcome.message}

    def _checkpoint(self, version: int, model: EnsembleDynamics, metrics: dict[str, Any]
                    ) -> StoredModel | None:
        metadata = {"task": self.task.name, "state_fields": self.state_fields,
                    "architecture": model.config.to_dict(), "metrics": metrics,
                    "created_unix": time.time()}
        try:
            return self.store.save(version, model, metadata)
        except (OSError, ValueError) as exc:
            self.diagnostics.problem("checkpoint", f"version {version} not saved: {exc}")
            return None

    def _republish_checkpoint(self) -> None:
        stored = self.store.latest()
        if stored is None:
            return
        meta = stored.metadata
        arch = meta.get("architecture", {})
        matches = (meta.get("task") == self.task.name
                   and meta.get("state_fields") == self.state_fields
                   and arch.get("state_dim") == self.task.state_dim
                   and arch.get("action_dim") == self.task.action_dim)
        if not matches:
            self.get_logger().warning(
                f"newest checkpoint {stored.path} is for task {meta.get('task')!r} with "
                f"fields {meta.get('state_fields')}: not republished")
            return
        self._current = stored
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
        msg = ModelUpdate(format_version=ModelUpdate.FORMAT_VERSION, version=stored.version,
                          task=self.task.name, state_fields=list(self.state_fields),
                          checksum=stored.checksum)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.architecture = json.dumps(stored.metadata.get("architecture", {}), sort_keys=True)
        msg.weights = stored.data
        msg.metrics = self._metrics_message(
            {**stored.metadata.get("metrics", {}), "model_version": stored.version,
             "accepted": True})
        return msg

    @staticmethod
    def _metrics_message(m: dict[str, Any]) -> TrainingMetrics:
        def number(name: str) -> float:
            value = m.get(name, _NAN)
            return float(value) if value is not None else _NAN

        return TrainingMetrics(
            model_version=int(m.get("model_version", 0)),
            num_transitions=int(m.get("num_transitions", 0)),
            num_episodes=int(m.get("num_episodes", 0)), epochs=int(m.get("epochs", 0)),
            duration_s=number("duration_s"), train_loss=number("train_loss"),
            val_loss=number("val_loss"), val_one_step_mse=number("val_one_step_mse"),
            val_multi_step_mse=[float(v) for v in m.get("val_multi_step_mse", [])],
            val_disagreement=number("val_disagreement"), accepted=bool(m.get("accepted")))

    # ----- status -------------------------------------------------------------------------
    def _training(self) -> bool:
        job = self._job
        return job is not None and job.is_alive()

    def _on_status(self, _req: GetStatus.Request, res: GetStatus.Response):
        res.node = self.get_fully_qualified_name()  # e.g. /hand/dynamics_trainer
        res.state = "training" if self._training() else "idle"
        res.model_version = self._current.version if self._current is not None else 0
        res.num_transitions = self.dataset.num_transitions
        res.num_episodes = self.dataset.num_episodes
        res.values = [KeyValue(key=str(k), value=str(v)) for k, v in self._status_values().items()]
        return res

    def _status_values(self) -> dict[str, Any]:
        with self._rec_lock:
            counts = dict(self.recorder.counts)
            open_episode = self.recorder.open_episode
        values: dict[str, Any] = {
            "task": self.task.name, "dataset_dir": self.dataset.root,
            "models_dir": self.store.root, "job_id": self._job_id,
            "open_episode": "none" if open_episode is None else
            f"{open_episode[0]} from step {open_episode[1]} ({open_episode[2]} states)",
            "open_episode_id": -1 if open_episode is None else open_episode[0],
            "max_episode_id": self.max_episode_id,
            "unsaved_episodes": len(self._unsaved), "write_failures": self._write_failures,
            "stale_states_skipped": self.stale_states,
            # Matched publishers: a stream that is not connected yet loses what is sent.
            "state_publishers": self._state_sub.get_publisher_count(),
            "action_publishers": self._action_sub.get_publisher_count(),
            "quarantined_files": len(self.dataset.quarantined) + len(self.store.quarantined)}
        values.update({f"rejected_{k}": n for k, n in dict(self.diagnostics.problems).items()})
        values.update({f"last_job_{k}": v for k, v in self._last_job.items()})
        values.update({f"recorder_{k}": v for k, v in sorted(counts.items())})
        return values

    def _health(self):
        values = self._status_values()
        values.update(state="training" if self._training() else "idle",
                      model_version=self.version, episodes=self.dataset.num_episodes,
                      transitions=self.dataset.num_transitions)
        if self._unsaved:
            return ERROR, f"{len(self._unsaved)} episode(s) not written to disk", values
        if self._last_job and not self._last_job["accepted"]:
            return WARN, f"last model rejected: {self._last_job['message']}", values
        state = "training" if self._training() else "recording"
        return OK, (f"{state}: {self.dataset.num_transitions} transitions, model version "
                    f"{self.version}"), values

    def close(self) -> None:
        """Stop a running job and store the episode being recorded (nothing is lost)."""
        self._cancel.set()
        job = self._job
        if job is not None:
            job.join(timeout=30.0)
        with self._rec_lock:
            finished = self.recorder.flush()
        self._retry_at = 0.0  # last chance for episodes a failed write kept in memory
        self._store(finished)


def main() -> int:
    return run_node(DynamicsTrainerNode)

