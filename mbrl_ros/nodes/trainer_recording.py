"""The ``dynamics_trainer``'s recording: a :class:`~mbrl_ros.core.data.recorder.TransitionRecorder`
fed by the stream callbacks (under one lock), and the durable
:class:`~mbrl_ros.core.data.dataset.EpisodeDataset` every finished episode goes to at once. A
failed write keeps the episodes in memory; they are retried with the next episode or after
``WRITE_RETRY_S``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import numpy.typing as npt
from rclpy.impl.rcutils_logger import RcutilsLogger

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.data.episode import Episode
from mbrl_ros.core.data.recorder import (
    StreamAction,
    StreamState,
    TransitionRecorder,
    backfill_episode,
    task_reward_fn,
)
from mbrl_ros.core.tasks import Task

WRITE_RETRY_S = 5.0


class EpisodeRecording:
    """The recorder and the dataset it fills; ``on_stored`` after every store attempt."""

    def __init__(self, task: Task, dataset: EpisodeDataset, action_grace_s: float,
                 logger: RcutilsLogger, problem: Callable[[str, str], None],
                 on_stored: Callable[[], None]) -> None:
        self.dataset = dataset
        self._log, self._problem, self._on_stored = logger, problem, on_stored
        self._recorder_args = dict(
            state_dim=task.state_dim, action_dim=task.action_dim,
            goal_dim=task.goal_dim, default_length=task.episode_length,
            reward_fn=task_reward_fn(task))
        self.recorder = TransitionRecorder(**self._recorder_args,
                                           action_grace_s=action_grace_s)
        self._rec_lock = threading.Lock()
        self.unsaved: list[Episode] = []
        self.write_failures = 0
        self._retry_at = 0.0
        # Newest stream episode id on disk: the experiment manager waits for it (and numbers
        # its episodes after it when it starts again).
        self.max_episode_id = max((int(self.dataset.episode_meta(i).get("episode_id", -1))
                                   for i in self.dataset.episode_ids), default=-1)

    # ----- the stream ---------------------------------------------------------------------
    def add_state(self, episode_id: int, step: int, state: npt.ArrayLike, stamp: float,
                  goal: npt.ArrayLike) -> None:
        with self._rec_lock:
            finished = self.recorder.add_state(episode_id, step, state, stamp, goal)
        self.store(finished)

    def add_action(self, episode_id: int, step: int, action: npt.ArrayLike, policy: str,
                   model_version: int) -> None:
        with self._rec_lock:
            finished = self.recorder.add_action(episode_id, step, action, policy,
                                                model_version)
        self.store(finished)

    def set_episode_length(self, episode_id: int, length: int) -> None:
        with self._rec_lock:
            finished = self.recorder.set_episode_length(episode_id, length)
        self.store(finished)

    def poll(self) -> None:
        with self._rec_lock:
            finished = self.recorder.poll()
        self.store(finished)

    @property
    def open_episode(self) -> tuple[int, int, int] | None:
        """``(episode_id, first step, states held)`` of the stretch being recorded."""
        with self._rec_lock:
            return self.recorder.open_episode

    def status(self) -> tuple[dict[str, int], tuple[int, int, int] | None]:
        """The recorder's counts and its open episode, read together."""
        with self._rec_lock:
            return dict(self.recorder.counts), self.recorder.open_episode

    def backfill(self, episode_id: int, length: int, states: Iterable[StreamState],
                 actions: Iterable[StreamAction]) -> tuple[Episode | None, int]:
        """An episode's stream paired like the live recorder would, without the steps the
        dataset holds already: (the rest or None, how many were held)."""
        return backfill_episode(self._recorder_args, episode_id, length, states, actions,
                                self.dataset.held_steps(episode_id))

    # ----- the dataset --------------------------------------------------------------------
    def store(self, episodes: list[Episode]) -> None:
        """Append finished episodes durably; a failed write is retried with the next
        episode or after ``WRITE_RETRY_S``."""
        if not episodes and (not self.unsaved or time.monotonic() < self._retry_at):
            return
        pending, self.unsaved = [*self.unsaved, *episodes], []
        for i, episode in enumerate(pending):
            try:
                dataset_id = self.dataset.append(episode)
                self.max_episode_id = max(self.max_episode_id, int(episode.meta["episode_id"]))
            except OSError as exc:
                self.write_failures += 1
                self.unsaved = pending[i:]
                self._retry_at = time.monotonic() + WRITE_RETRY_S
                self._problem("dataset_write", f"{exc}; {len(self.unsaved)} "
                              "episode(s) kept in memory, retried with the next")
                break
            except ValueError as exc:
                self._problem("episode", f"{exc}; episode not stored")
                continue
            meta = episode.meta
            self._log.info(
                f"stored episode {meta['episode_id']} steps {meta['first_step']}.."
                f"{meta['last_step']} ({len(episode)} transitions, {meta['end']}, policy "
                f"'{meta['policy']}') as #{dataset_id}; dataset: "
                f"{self.dataset.num_transitions} transitions")
        self._on_stored()

    def flush(self) -> None:
        """Store the episode being recorded, and retry what a failed write kept (shutdown:
        nothing is lost)."""
        with self._rec_lock:
            finished = self.recorder.flush()
        self._retry_at = 0.0  # last chance for episodes a failed write kept in memory
        self.store(finished)

