"""The ``mpc_planner``'s goal schedules: the goal rows and length of the newest episodes
(from ``goal_schedule``), and the newest state that arrived before its episode's schedule.

The estimator assigns a state to episode N only after it has N's schedule, but the planner
may get that state before the schedule itself: it waits here and is acted on when the
schedule arrives.
"""

from __future__ import annotations

import threading

import numpy as np

from mbrl_ros.msg import TaskState

KEPT_SCHEDULES = 8


class GoalSchedules:
    """Schedules by episode id (the newest ``KEPT_SCHEDULES``), shared between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schedules: dict[int, tuple[np.ndarray, int]] = {}
        self._unscheduled: TaskState | None = None  # newest state still waiting for its schedule

    def add(self, episode_id: int, goals: np.ndarray, length: int) -> TaskState | None:
        """Keep an episode's ``goals`` and ``length``; returns (and forgets) the state that
        waits for a schedule, if any (of whichever episode)."""
        with self._lock:
            self._schedules[episode_id] = (goals, length)
            while len(self._schedules) > KEPT_SCHEDULES:
                del self._schedules[min(self._schedules)]
            waiting, self._unscheduled = self._unscheduled, None
        return waiting

    def get(self, episode_id: int) -> tuple[np.ndarray, int] | None:
        """``(goals, length)`` of the episode, or None."""
        with self._lock:
            return self._schedules.get(episode_id)

    def wait_for_schedule(self, msg: TaskState) -> bool:
        """True when the episode of ``msg`` has no schedule yet; ``msg`` then waits (the
        newest such state replaces an older one)."""
        with self._lock:
            if int(msg.episode_id) not in self._schedules:
                self._unscheduled = msg
                return True
        return False
