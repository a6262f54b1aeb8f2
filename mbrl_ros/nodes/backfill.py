"""Episodes the trainer missed, as the experiment manager saw them, until it takes them.

The trainer records from volatile topics: what runs while it is down or restarting never
reaches it. The experiment manager watched every episode (states with stamps, goals and
stale flags; the applied actions), so it keeps the ones the trainer did not confirm and
sends them to ``<trainer>/store_episode`` once the trainer answers again. The trainer
pairs them like its own recorder and skips the steps it already holds, so sending one
twice (or one it has) stores nothing twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mbrl_ros.msg import PlannedAction
from mbrl_ros.srv import StoreEpisode

# Episodes kept for a trainer that stays away (about 30 KB each): the oldest go first.
BACKLOG_EPISODES = 256


@dataclass
class SeenState:
    """A task state as the experiment manager received it first."""

    vector: np.ndarray
    goal: np.ndarray
    stamp: float
    stale: bool


@dataclass
class Backlog:
    """Requests for the trainer, oldest first; ``dropped`` counts those pushed out."""

    requests: deque = field(default_factory=lambda: deque(maxlen=BACKLOG_EPISODES))
    dropped: int = 0

    def add(self, request: StoreEpisode.Request) -> None:
        if len(self.requests) == self.requests.maxlen:
            self.dropped += 1
        self.requests.append(request)

    def __len__(self) -> int:
        return len(self.requests)


def transitions_seen(states: dict[int, SeenState], actions: dict[int, PlannedAction],
                     length: int) -> int:
    """Transitions the stream holds: steps k < length with fresh states k, k + 1 and an
    action k (what a recorder that skips stale states can store)."""
    fresh = {k for k, s in states.items() if not s.stale}
    return sum(1 for k in range(length) if k in fresh and k + 1 in fresh and k in actions)


def store_request(task: str, episode_id: int, length: int, states: dict[int, SeenState],
                  actions: dict[int, PlannedAction]) -> StoreEpisode.Request:
    """The episode's stream as one ``StoreEpisode`` request."""
    state_steps = sorted(states)
    action_steps = sorted(actions)
    seen = [states[k] for k in state_steps]
    acts = [actions[k] for k in action_steps]
    return StoreEpisode.Request(
        task=task, episode_id=episode_id, episode_length=length,
        state_steps=state_steps,
        states=np.concatenate([s.vector for s in seen]).tolist() if seen else [],
        goals=np.concatenate([s.goal for s in seen]).tolist() if seen else [],
        stamps=[s.stamp for s in seen], stale=[s.stale for s in seen],
        action_steps=action_steps,
        actions=[float(x) for a in acts for x in a.action],
        policies=[a.stats.planner for a in acts],
        model_versions=[int(a.stats.model_version) for a in acts])
