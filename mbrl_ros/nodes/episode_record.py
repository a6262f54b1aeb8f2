"""What the experiment manager saw of one episode, and what it makes of it.

:class:`EpisodeRecord` collects an episode's task states and commands from the topics
(callbacks add, the experiment's worker reads, under the node's lock). From it come the
episode's arrays for the metrics, the reason to abandon a stalled episode, and the
episode's stream for the trainer's ``store_episode`` (which the trainer reads back with
:func:`stream_from_request`).

The trainer records from volatile topics: what runs while it is down or restarting never
reaches it. The experiment manager keeps the episodes the trainer did not confirm in a
:class:`Backlog` and sends them once the trainer answers again. The trainer pairs them like
its own recorder and skips the steps it already holds, so sending one twice (or one it has)
stores nothing twice.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mbrl_ros.core.data.recorder import StreamAction, StreamState
from mbrl_ros.msg import GoalSchedule, PlannedAction
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
class EpisodeRecord:
    """What the topics said about one episode (fields after ``done``: the fault watch;
    times are ``time.monotonic()``)."""

    episode_id: int
    length: int
    states: dict[int, SeenState] = field(default_factory=dict)
    actions: dict[int, PlannedAction] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    t0_ns: int | None = None  # stamp of the first observation (known after the reset)
    started: float = 0.0  # when the schedule went out
    last_state: float = 0.0  # when the newest fresh (not stale) state came
    last_action: float = 0.0  # when the newest command came
    object_step: int = -1  # the simulator's newest step count in this episode
    problem: str = ""  # set by a callback: the simulator restarted
    schedule: GoalSchedule | None = None  # as published (shortened again at a drop)

    def add_state(self, step: int, seen: SeenState, now: float) -> None:
        """State ``step``; a re-publish (same stamp) keeps the flags it came with first."""
        if not seen.stale:
            self.last_state = now
        known = self.states.get(step)
        if known is None or known.stamp != seen.stamp:
            self.states[step] = seen
        if step == self.length:
            self.done.set()

    def add_action(self, msg: PlannedAction, now: float) -> None:
        self.actions[msg.step] = msg
        self.last_action = now

    def stall(self, now: float, stall_s: float) -> str:
        """Why the episode cannot go on ("" while it can): the simulator restarted, or no
        fresh state or no command came for ``stall_s`` seconds."""
        if self.problem:
            return self.problem
        quiet_states = now - max(self.last_state, self.started)
        if quiet_states > stall_s:
            return (f"no fresh task state for {quiet_states:.1f} s (the simulator or the "
                    "state estimator stopped)")
        quiet_commands = now - max(self.last_action, self.started)
        if quiet_commands > stall_s:
            return f"no command for {quiet_commands:.1f} s (the planner stopped)"
        return ""

    def missing(self) -> tuple[list[int], list[int]]:
        """Steps without a state (0..T) and without an action (0..T-1)."""
        return ([k for k in range(self.length + 1) if k not in self.states],
                [k for k in range(self.length) if k not in self.actions])

    def arrays(self, state_dim: int, action_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """States ``[T+1, S]`` and actions ``[T, A]`` for the metrics; a missing entry
        repeats the one before it (the first state: the earliest one seen)."""
        states = np.zeros((self.length + 1, state_dim))
        actions = np.zeros((self.length, action_dim))
        for k in range(self.length + 1):
            seen = self.states.get(k)
            if seen is not None:
                states[k] = seen.vector
            else:
                states[k] = states[k - 1] if k else self.states[min(self.states)].vector
        for k in range(self.length):
            msg = self.actions.get(k)
            if msg is not None:
                actions[k] = np.asarray(msg.action)
            elif k:
                actions[k] = actions[k - 1]
        return states, actions

    def transitions_seen(self) -> int:
        """Transitions the stream holds: steps k < T with fresh states k, k + 1 and an
        action k (what a recorder that skips stale states can store)."""
        fresh = {k for k, s in self.states.items() if not s.stale}
        return sum(1 for k in range(self.length)
                   if k in fresh and k + 1 in fresh and k in self.actions)

    def store_request(self, task: str) -> StoreEpisode.Request:
        """The episode's stream as one ``StoreEpisode`` request."""
        seen = [self.states[k] for k in sorted(self.states)]
        acts = [self.actions[k] for k in sorted(self.actions)]
        return StoreEpisode.Request(
            task=task, episode_id=self.episode_id, episode_length=self.length,
            state_steps=sorted(self.states),
            states=np.concatenate([s.vector for s in seen]).tolist() if seen else [],
            goals=np.concatenate([s.goal for s in seen]).tolist() if seen else [],
            stamps=[s.stamp for s in seen], stale=[s.stale for s in seen],
            action_steps=sorted(self.actions),
            actions=[float(x) for a in acts for x in a.action],
            policies=[a.stats.planner for a in acts],
            model_versions=[int(a.stats.model_version) for a in acts])


@dataclass
class Backlog:
    """``StoreEpisode`` requests for the trainer, oldest first; ``dropped`` counts those
    pushed out by newer ones."""

    requests: deque = field(default_factory=lambda: deque(maxlen=BACKLOG_EPISODES))
    dropped: int = 0

    def add(self, request: StoreEpisode.Request) -> None:
        if len(self.requests) == self.requests.maxlen:
            self.dropped += 1
        self.requests.append(request)

    def __len__(self) -> int:
        return len(self.requests)


def stream_from_request(req: StoreEpisode.Request, dims: tuple[int, int, int],
                        skip_stale: bool, action_tolerance: float = 1e-6
                        ) -> tuple[list[StreamState], list[StreamAction]]:
    """The request's states and actions for the recorder core. ``dims`` are the task's
    (state, action, goal) sizes; stale states are left out when ``skip_stale``. ValueError
    when the arrays do not fit the dims or an action is outside [-1, 1] (or non-finite)."""
    state_dim, action_dim, goal_dim = dims
    n, m = len(req.state_steps), len(req.action_steps)
    sizes = {"states": (len(req.states), n * state_dim), "goals": (len(req.goals), n * goal_dim),
             "stamps": (len(req.stamps), n), "stale": (len(req.stale), n),
             "actions": (len(req.actions), m * action_dim), "policies": (len(req.policies), m),
             "model_versions": (len(req.model_versions), m)}
    for name, (got, want) in sizes.items():
        if got != want:
            raise ValueError(f"{name} has {got} values, expected {want}")
    if req.episode_length < 1:
        raise ValueError("episode_length must be >= 1")
    vectors = np.asarray(req.states, dtype=np.float64).reshape(n, state_dim)
    goals = np.asarray(req.goals, dtype=np.float64).reshape(n, goal_dim)
    acts = np.asarray(req.actions, dtype=np.float64).reshape(m, action_dim)
    if m and not np.all(np.abs(acts) <= 1.0 + action_tolerance):
        raise ValueError("actions outside [-1, 1] (or non-finite)")
    states = [StreamState(int(k), vectors[i], goals[i], float(req.stamps[i]))
              for i, k in enumerate(req.state_steps) if not (req.stale[i] and skip_stale)]
    actions = [StreamAction(int(k), np.clip(acts[i], -1, 1), req.policies[i],
                            int(req.model_versions[i]))
               for i, k in enumerate(req.action_steps)]
    return states, actions
