"""Turns a live stream of task states and applied actions into finished episodes.

The stream (docs/node_graph.md, protocol step 5): one state per control step ``(N, k)``
(episode N, step k, re-published unchanged when a stamp repeats) and the action applied at
``(N, k)`` (the newest one counts). A transition pairs state ``(N, k)``, action ``(N, k)``
and state ``(N, k + 1)``; nothing is ever paired across episodes. Pairing happens when a
stretch of the episode is finished, so an action that arrives a little after the next state
(two topics are not ordered against each other) still counts.

An episode of known length T (its goal schedule) is finished when its state T arrives and
all its actions are in (or ``action_grace_s`` later, or as soon as another episode's state
arrives). An open-ended episode (no schedule, or length 0) is stored in stretches of
``default_length`` steps. A state of another episode cuts the current one short; what it
holds is kept when it has at least one transition.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from mbrl_ros.core.data.episode import Episode
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.core.validation import finite_vector

# (next_state [n, S], action [n, A], goal [n, G]) -> (reward [n], terminated [n] bool)
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_MAX_KNOWN_LENGTHS = 64
_MAX_EARLY_ACTIONS = 4096


def task_reward_fn(task: Task) -> RewardFn:
    """The task's reward of reaching ``next_state`` under the goal in force there.

    Goal timing (``mbrl_ros.core.tasks.base``): transition ``k`` is scored on ``s_{k+1}``
    against ``goals[k + 1]``, which is the goal carried by state ``k + 1``.
    """

    def reward(
        next_state: np.ndarray, action: np.ndarray, goal: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            r, done = task.reward(
                torch.as_tensor(next_state, dtype=torch.float32),
                torch.as_tensor(action, dtype=torch.float32),
                torch.as_tensor(goal, dtype=torch.float32),
            )
        return r.numpy().astype(np.float32), done.numpy().astype(np.bool_)

    return reward


@dataclass
class _State:
    vector: np.ndarray
    goal: np.ndarray
    stamp: float


@dataclass
class _Action:
    vector: np.ndarray
    policy: str
    model_version: int


@dataclass
class _Open:
    """The stretch of an episode being recorded: steps ``start .. end`` (see
    ``TransitionRecorder._end``)."""

    episode_id: int
    start: int
    states: dict[int, _State] = field(default_factory=dict)
    actions: dict[int, _Action] = field(default_factory=dict)
    complete_since: float | None = None  # last state arrived, waiting for missing actions


class TransitionRecorder:
    """Pairs ``state(N, k)``, ``action(N, k)``, ``state(N, k+1)`` into stored episodes.

    ``add_state`` / ``add_action`` / ``poll`` / ``flush`` return the episodes they finished
    (usually none). Not thread safe: feed it from one thread (or under one lock).
    ``counts`` says what was received, ignored and skipped.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        goal_dim: int,
        default_length: int,
        reward_fn: RewardFn | None = None,
        action_grace_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("state_dim", state_dim), ("action_dim", action_dim),
                            ("default_length", default_length)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if int(goal_dim) < 0:
            raise ValueError(f"goal_dim must be >= 0, got {goal_dim}")
        if not action_grace_s >= 0:
            raise ValueError(f"action_grace_s must be >= 0, got {action_grace_s}")
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        self.goal_dim, self.default_length = int(goal_dim), int(default_length)
        self.reward_fn = reward_fn
        self.action_grace_s = float(action_grace_s)
        self._clock = clock
        self._lengths: dict[int, int] = {}
        self._open: _Open | None = None
        self._closed: tuple[int, float] | None = None  # (episode id, newest stamp) last closed
        self._early_actions: dict[tuple[int, int], _Action] = {}
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ inputs
    def set_episode_length(self, episode_id: int, length: int) -> list[Episode]:
        """Episode ``episode_id`` has states ``0..length`` (0: open-ended).

        Returns the episode when this completes it (its states up to ``length`` and their
        actions are all in: a recorder that joined late, or an episode ended early by a
        drop); otherwise it completes with a later input or :meth:`poll`.
        """
        if int(length) < 0:
            raise ValueError(f"episode length must be >= 0, got {length}")
        self._lengths.pop(int(episode_id), None)
        self._lengths[int(episode_id)] = int(length)
        while len(self._lengths) > _MAX_KNOWN_LENGTHS:
            del self._lengths[next(iter(self._lengths))]
        current = self._open
        if (current is not None and current.episode_id == int(episode_id) and int(length) > 0
                and current.complete_since is None
                and max(current.states, default=-1) >= self._end(current)):
            # Its last state came before its length (a recorder that joined late, or the
            # episode ended early): complete now; stored at once when no action is missing,
            # else by the missing action or poll().
            current.complete_since = self._clock()
            return self._finish_if_ready(current)
        return []

    def add_state(
        self,
        episode_id: int,
        step: int,
        state: npt.ArrayLike,
        stamp: float,
        goal: npt.ArrayLike | None = None,
    ) -> list[Episode]:
        """Record the state of ``(episode_id, step)`` stamped ``stamp`` (s) with its goal."""
        vector = finite_vector(state, self.state_dim, "state")
        goal_vec = finite_vector(np.zeros(0) if goal is None else goal, self.goal_dim, "goal")
        episode_id, step, stamp = int(episode_id), int(step), float(stamp)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self.counts["states"] += 1
        finished: list[Episode] = []
        current = self._open
        if current is None or current.episode_id != episode_id:
            closed = self._closed
            if closed is not None and closed[0] == episode_id and stamp <= closed[1]:
                # the episode stored last, re-sent (same stamp) or reordered
                self.counts["duplicate_states" if stamp == closed[1] else "late_states"] += 1
                return finished
            finished += self._close("cut_short")
            current = None
        else:
            known = current.states.get(step)
            if known is not None and known.stamp == stamp:
                self.counts["duplicate_states"] += 1
                return finished
            newest = max(s.stamp for s in current.states.values())
            if step <= max(current.states) and stamp > newest:
                # An earlier step measured anew: the episode was started again (a reset).
                self.counts["restarted_episodes"] += 1
                finished += self._close("restarted")
                current = None
            elif known is not None or step < current.start:
                self.counts["late_states"] += 1
                return finished
        if current is None:
            length = self._lengths.get(episode_id, 0)
            if length > 0 and step > length:  # e.g. one more state after a drop ended it
                self.counts["states_after_end"] += 1
                return finished
            current = self._open = _Open(episode_id, step)
            self._claim_early_actions(current)
        end = self._end(current)
        scheduled = self._lengths.get(episode_id, 0) > 0
        if scheduled and step > end:
            self.counts["states_after_end"] += 1
            return finished
        current.states[step] = _State(vector, goal_vec, stamp)
        while step > end:  # open-ended: a stretch boundary was passed without its state
            finished += self._advance(current)
            current = self._open
            assert current is not None
            end = self._end(current)
        if step == end:
            current.complete_since = self._clock()
            finished += self._finish_if_ready(current)
        return finished

    def add_action(
        self,
        episode_id: int,
        step: int,
        action: npt.ArrayLike,
        policy: str = "",
        model_version: int = 0,
    ) -> list[Episode]:
        """Record the action applied at ``(episode_id, step)``; a newer one replaces it."""
        record = _Action(finite_vector(action, self.action_dim, "action"), str(policy),
                         int(model_version))
        episode_id, step = int(episode_id), int(step)
        self.counts["actions"] += 1
        current = self._open
        if current is None or current.episode_id != episode_id:
            if self._closed is not None and self._closed[0] == episode_id:
                self.counts["late_actions"] += 1
            else:  # an episode whose first state has not arrived yet
                self._early_actions[(episode_id, step)] = record
                while len(self._early_actions) > _MAX_EARLY_ACTIONS:
                    del self._early_actions[next(iter(self._early_actions))]
            return []
        if step < current.start:
            self.counts["late_actions"] += 1
            return []
        if step in current.actions:
            self.counts["replaced_actions"] += 1
        current.actions[step] = record
        return self._finish_if_ready(current)

    def poll(self) -> list[Episode]:
        """Finish a complete stretch whose missing actions are more than ``action_grace_s``
        late (they are left out)."""
        current = self._open
        if current is None or current.complete_since is None:
            return []
        if self._clock() - current.complete_since < self.action_grace_s:
            return []
        return self._advance(current)

    def flush(self) -> list[Episode]:
        """Finish whatever is open now (e.g. at shutdown), cut short."""
        return self._close("flushed")

    # ------------------------------------------------------------------ status
    @property
    def open_episode(self) -> tuple[int, int, int] | None:
        """``(episode_id, first step, states held)`` of the stretch being recorded."""
        if self._open is None:
            return None
        return self._open.episode_id, self._open.start, len(self._open.states)

    # ------------------------------------------------------------------ internals
    def _end(self, current: _Open) -> int:
        """Last step of the current stretch: the episode's length, or for an open-ended
        episode the next multiple of ``default_length`` after the stretch's start."""
        length = self._lengths.get(current.episode_id, 0)
        if length > 0:
            return length
        return (current.start // self.default_length + 1) * self.default_length

    def _claim_early_actions(self, current: _Open) -> None:
        keys = [key for key in self._early_actions if key[0] == current.episode_id]
        for key in keys:
            record = self._early_actions.pop(key)
            if key[1] >= current.start:
                current.actions[key[1]] = record

    def _finish_if_ready(self, current: _Open) -> list[Episode]:
        if current.complete_since is None:
            return []
        if any(k not in current.actions for k in range(current.start, self._end(current))):
            return []  # a missing action may still arrive (resent); poll() gives up later
        return self._advance(current)

    def _advance(self, current: _Open) -> list[Episode]:
        """Store the complete stretch; an open-ended episode continues from its last state."""
        end = self._end(current)
        finished = self._episode(current, end, "complete")
        self._closed = (current.episode_id, max(s.stamp for s in current.states.values()))
        length = self._lengths.get(current.episode_id, 0)
        if length > 0:
            self._open = None
        else:
            nxt = _Open(current.episode_id, end)
            nxt.states = {k: s for k, s in current.states.items() if k >= end}
            nxt.actions = {k: a for k, a in current.actions.items() if k >= end}
            self._open = nxt
        return finished

    def _close(self, reason: str) -> list[Episode]:
        current = self._open
        if current is None:
            return []
        self._open = None
        if not current.states:
            return []
        self._closed = (current.episode_id, max(s.stamp for s in current.states.values()))
        if current.complete_since is not None:
            reason = "complete"  # all states are in, only actions were still missing
        return self._episode(current, max(current.states), reason)

    def _episode(self, current: _Open, end: int, reason: str) -> list[Episode]:
        """Transitions ``start .. end - 1`` whose two states and action are all present."""
        steps = range(current.start, end)
        usable = [k for k in steps if k in current.states and k + 1 in current.states
                  and k in current.actions]
        no_state = sum(1 for k in steps if k not in current.states or k + 1 not in current.states)
        no_action = len(steps) - no_state - len(usable)
        self.counts["skipped_missing_state"] += no_state
        self.counts["skipped_missing_action"] += no_action
        if not usable:
            self.counts["empty_stretches"] += 1
            return []
        first = [current.states[k] for k in usable]
        second = [current.states[k + 1] for k in usable]
        acts = [current.actions[k] for k in usable]
        state = np.stack([s.vector for s in first]).astype(np.float32)
        next_state = np.stack([s.vector for s in second]).astype(np.float32)
        action = np.stack([a.vector for a in acts]).astype(np.float32)
        if self.reward_fn is not None:
            goal = np.stack([s.goal for s in second])
            reward, done = self.reward_fn(next_state, action, goal)
        else:
            reward = np.zeros(len(usable), dtype=np.float32)
            done = np.zeros(len(usable), dtype=np.bool_)
        policies = Counter(a.policy for a in acts)
        versions = Counter(a.model_version for a in acts)
        meta = {
            "episode_id": current.episode_id,
            "first_step": usable[0],
            "last_step": usable[-1] + 1,
            "episode_length": self._lengths.get(current.episode_id, 0),
            "end": reason,
            "cut_short": reason != "complete",
            "skipped_transitions": no_state + no_action,
            "policy": policies.most_common(1)[0][0],
            "policy_counts": dict(policies),
            "model_version": int(versions.most_common(1)[0][0]),
        }
        self.counts["episodes"] += 1
        self.counts["transitions"] += len(usable)
        if reason != "complete":
            self.counts["cut_short_episodes"] += 1
        return [Episode(
            state=state, action=action, next_state=next_state,
            reward=np.asarray(reward, dtype=np.float32).reshape(-1),
            done=np.asarray(done, dtype=np.bool_).reshape(-1),
            time=np.array([s.stamp for s in first], dtype=np.float64),
            step=np.array(usable, dtype=np.int64), meta=meta)]


@dataclass(frozen=True)
class StreamState:
    """A task state of an episode's stream as another node saw it."""

    step: int
    vector: np.ndarray
    goal: np.ndarray
    stamp: float


@dataclass(frozen=True)
class StreamAction:
    """An applied action of an episode's stream as another node saw it."""

    step: int
    vector: np.ndarray
    policy: str = ""
    model_version: int = 0


def backfill_episode(
    recorder_args: dict[str, Any],
    episode_id: int,
    length: int,
    states: Iterable[StreamState],
    actions: Iterable[StreamAction],
    held: set[int],
) -> tuple[Episode | None, int]:
    """Pair a whole episode's stream exactly like the live recorder would, then drop the
    transitions whose steps are ``held`` already. Returns the rest as one episode (None when
    nothing is new; meta ``end`` "backfilled") and how many transitions were held.

    ``recorder_args``: :class:`TransitionRecorder`'s dims, ``default_length`` and
    ``reward_fn``. ValueError for a malformed state or action.
    """
    recorder = TransitionRecorder(**recorder_args, action_grace_s=0.0)
    recorder.set_episode_length(episode_id, length)
    for a in actions:  # kept until the episode's first state claims them
        recorder.add_action(episode_id, a.step, a.vector, a.policy, a.model_version)
    finished: list[Episode] = []
    for s in sorted(states, key=lambda s: (s.step, s.stamp)):
        finished += recorder.add_state(episode_id, s.step, s.vector, s.stamp, s.goal)
    finished += recorder.flush()
    if not finished:
        return None, 0
    if len(finished) > 1:  # a restart within the stream: its newest run counts
        finished = finished[-1:]
    (episode,) = finished
    keep = ~np.isin(episode.step, sorted(held))
    already = int(len(episode) - keep.sum())
    if not keep.any():
        return None, already
    steps = episode.step[keep]
    meta = {**episode.meta, "end": "backfilled", "first_step": int(steps[0]),
            "last_step": int(steps[-1]) + 1, "already_held": already}
    return replace(
        episode, state=episode.state[keep], action=episode.action[keep],
        next_state=episode.next_state[keep], reward=episode.reward[keep],
        done=episode.done[keep], time=episode.time[keep], step=steps, meta=meta), already
