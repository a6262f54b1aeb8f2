"""The ``mpc_planner``'s health and status: the planning loop's status with the node's mode
and its rejected models, as a diagnostics report (ERROR while holding on a stale state, WARN
while deadline misses grow) and as ``GetStatus`` values."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import KeyValue

from mbrl_ros.nodes.diagnostics import ERROR, OK, WARN, Report

MISS_WINDOW_S = 5.0  # diagnostics WARN while deadline misses grew within this window


class RecentMisses:
    """How many deadline misses the last ``MISS_WINDOW_S`` seconds added."""

    def __init__(self) -> None:
        self._misses: deque[tuple[float, int]] = deque()

    def update(self, misses: int, now: float) -> int:
        """The growth of the loop's total ``misses`` within the window ending ``now``
        (monotonic s)."""
        self._misses.append((now, misses))
        while len(self._misses) > 1 and now - self._misses[0][0] > MISS_WINDOW_S:
            self._misses.popleft()
        return misses - self._misses[0][1]


def health_report(status: Mapping[str, Any], mode: str, recent: int,
                  rejected_models: int) -> Report:
    """The diagnostics report of the loop's ``status`` (floats rounded), with the ``recent``
    deadline misses (:class:`RecentMisses`)."""
    values = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in status.items()}
    values.update(mode=mode, recent_deadline_misses=recent, rejected_models=rejected_models)
    if status["state"] == "holding":
        return ERROR, f"stale state: {status['note']}", values
    if recent > 0:
        return WARN, f"{recent} deadline misses in the last {MISS_WINDOW_S:.0f} s", values
    return OK, f"{status['state']} (model version {status['model_version']})", values


def status_values(status: Mapping[str, Any], mode: str, rejected_models: int
                  ) -> list[KeyValue]:
    """``GetStatus.values``: the loop's ``status`` but its state and model version (fields
    of their own), then the mode and the rejected models."""
    values = [KeyValue(key=k, value=str(v)) for k, v in status.items()
              if k not in ("state", "model_version")]
    values.append(KeyValue(key="mode", value=mode))
    values.append(KeyValue(key="rejected_models", value=str(rejected_models)))
    return values
