"""The ``dynamics_trainer``'s training jobs and model versions.

One job at a time, on a snapshot of the dataset, in its own thread: the thread lowers its
own priority (``niceness``) and caps torch's threads (``train_threads``, in the retraining
settings) so the planner keeps the cores. A model that validates gets the next version and
is checkpointed in the :class:`~mbrl_ros.core.models.model_store.ModelStore`. The node publishes
what a job reports (``on_epoch``, ``on_finished``, ``on_cancelled``, called in the job's
thread). A cancelled job (``cancel``, or the node shutting down) ends at its next epoch and
publishes nothing: no model, no metrics.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from rclpy.impl.rcutils_logger import RcutilsLogger

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.model_store import ModelStore, StoredModel
from mbrl_ros.core.models.retraining import RetrainOutcome, RetrainSettings, retrain
from mbrl_ros.core.models.serialization import model_from_bytes
from mbrl_ros.core.tasks import Task
from mbrl_ros.nodes.trainer_messages import NAN
from mbrl_ros.nodes.trainer_params import retrain_settings

#: A job's epoch: (job id, epoch 1..epochs, epochs, train loss, validation loss or NaN).
EpochReport = Callable[[int, int, int, float, float], None]
#: A finished job: (job id, outcome message, metrics with model_version and accepted, the
#: checkpoint of an accepted model or None).
FinishReport = Callable[[int, str, dict[str, Any], StoredModel | None], None]
#: A cancelled job: (job id, why).
CancelReport = Callable[[int, str], None]


class _Cancelled(Exception):
    """Raised inside a training job when it is cancelled or the node shuts down."""


class TrainingJobs:
    """Starts, runs and cancels the training jobs; holds the current model and version."""

    def __init__(self, task: Task, dataset: EpisodeDataset, store: ModelStore,
                 logger: RcutilsLogger, problem: Callable[[str, str], None],
                 on_epoch: EpochReport, on_finished: FinishReport,
                 on_cancelled: CancelReport) -> None:
        self.task, self.dataset, self.store = task, dataset, store
        self.state_fields = list(task.layout.names)
        self._log, self._problem = logger, problem
        self._on_epoch, self._on_finished = on_epoch, on_finished
        self._on_cancelled = on_cancelled
        self._job_lock = threading.Lock()
        self._job: threading.Thread | None = None
        self.job_id = 0
        self._cancel = threading.Event()  # the node shuts down: every job
        self._cancel_job = threading.Event()  # the running job (a new one gets a new event)
        self.last_job: dict[str, Any] = {}
        self.current: StoredModel | None = None
        self.version = self.store.newest_version

    @property
    def training(self) -> bool:
        job = self._job
        return job is not None and job.is_alive()

    def refusal(self, p: Mapping[str, Any], epochs: int) -> str | None:
        """Why a job with the parameter values ``p`` and ``epochs`` would be refused now
        (one is running, too little data, a request out of range), None if it would start."""
        n, episodes = self.dataset.num_transitions, self.dataset.num_episodes
        if self.training:
            return f"job {self.job_id} is still running"
        if n < p["min_transitions"] or episodes < 2:
            return (f"too little data: {n} transitions in {episodes} episodes "
                    f"(need {p['min_transitions']} in at least 2 episodes)")
        if epochs > 1000000:
            return f"epochs {epochs} above 1000000"
        if p["device"] == "cuda" and not torch.cuda.is_available():
            return "device 'cuda' requested, none available"
        return None

    def submit(self, p: Mapping[str, Any], epochs: int, from_scratch: bool
               ) -> tuple[bool, int, str]:
        """Start a job with the parameter values ``p`` unless ``refusal`` names a reason:
        (accepted, job id, message); a refused request's job id is the running job's, or 0."""
        with self._job_lock:
            refused = self.refusal(p, epochs)
            if refused is not None:
                return False, (self.job_id if self.training else 0), refused
            n, episodes = self.dataset.num_transitions, self.dataset.num_episodes
            settings = retrain_settings(self.task, p, int(epochs), bool(from_scratch))
            self.job_id += 1
            message = (f"job {self.job_id}: {settings.train.epochs} epochs on "
                       f"{n} transitions in {episodes} episodes")
            self._cancel_job = threading.Event()
            self._job = threading.Thread(
                target=self._run_job, name=f"train-job-{self.job_id}", daemon=True,
                args=(self.job_id, settings, p["niceness"], p["train.log_every"],
                      self._cancel_job))
            self._job.start()
            return True, self.job_id, message

    def cancel(self, job_id: int) -> bool:
        """Stop job ``job_id`` at its next epoch; False when it is not the running job."""
        with self._job_lock:
            if job_id != self.job_id or not self.training:
                return False
            self._cancel_job.set()
            return True

    def _run_job(self, job_id: int, settings: RetrainSettings, niceness: int,
                 log_every: int, cancel: threading.Event) -> None:
        """Body of the training thread (never runs on the executor)."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError as exc:
            self._log.warning(f"job {job_id}: cannot set niceness {niceness}: {exc}")
        epochs = settings.train.epochs

        def progress(epoch: int, values: dict[str, Any]) -> None:
            if self._cancel.is_set() or cancel.is_set():
                raise _Cancelled
            train = float(values["train_loss"])
            val = float(values.get("val_loss", NAN))
            self._on_epoch(job_id, epoch, epochs, train, val)
            if epoch % log_every == 0 or epoch == epochs:
                self._log.info(f"job {job_id}: epoch {epoch}/{epochs} train loss "
                               f"{values['train_loss']:.4g} val loss {val:.4g}")

        previous = None
        current = self.current
        if not settings.train.from_scratch and current is not None:
            previous, _ = model_from_bytes(current.data)
        try:
            outcome = retrain(self.dataset, settings, previous, progress)
        except _Cancelled:
            why = "cancelled by shutdown" if self._cancel.is_set() else "cancelled on request"
            self._log.info(f"job {job_id}: {why}; no model published")
            self._on_cancelled(job_id, why)
            return
        except Exception as exc:  # a failed job must not take the node down
            self._problem("training", f"job {job_id} failed: {exc!r}")
            outcome = RetrainOutcome(False, f"failed: {exc!r}", None, {})
        self._finish_job(job_id, outcome)

    def _finish_job(self, job_id: int, outcome: RetrainOutcome) -> None:
        """Version and checkpoint an accepted model, then report the job."""
        m = outcome.metrics
        stored = None
        if outcome.accepted and outcome.model is not None:
            version = max(self.version, self.store.newest_version) + 1
            m = {**m, "model_version": version, "accepted": True}
            stored = self._checkpoint(version, outcome.model, m)
            if stored is not None:
                self.current, self.version = stored, version
            else:
                m["accepted"] = False
                outcome = RetrainOutcome(False, "checkpoint could not be written", None, m)
        else:
            m = {**m, "model_version": self.version, "accepted": False}
        self._on_finished(job_id, outcome.message, m, stored)
        self.last_job = {"job_id": job_id, "accepted": m["accepted"],
                         "message": outcome.message}

    def _checkpoint(self, version: int, model: EnsembleDynamics, metrics: dict[str, Any]
                    ) -> StoredModel | None:
        metadata = {"task": self.task.name, "state_fields": self.state_fields,
                    "architecture": model.config.to_dict(), "metrics": metrics,
                    "created_unix": time.time()}
        try:
            return self.store.save(version, model, metadata)
        except (OSError, ValueError) as exc:
            self._problem("checkpoint", f"version {version} not saved: {exc}")
            return None

    def adopt_newest_checkpoint(self) -> StoredModel | None:
        """The newest checkpoint as the current model when it fits the task (start-up: the
        node republishes it); None when there is none or it is for another task."""
        stored = self.store.latest()
        if stored is None:
            return None
        meta = stored.metadata
        arch = meta.get("architecture", {})
        matches = (meta.get("task") == self.task.name
                   and meta.get("state_fields") == self.state_fields
                   and arch.get("state_dim") == self.task.state_dim
                   and arch.get("action_dim") == self.task.action_dim)
        if not matches:
            self._log.warning(
                f"newest checkpoint {stored.path} is for task {meta.get('task')!r} with "
                f"fields {meta.get('state_fields')}: not republished")
            return None
        self.current = stored
        return stored

    def close(self) -> None:
        """Cancel a running job and wait for its thread (at most 30 s)."""
        self._cancel.set()
        job = self._job
        if job is not None:
            job.join(timeout=30.0)
