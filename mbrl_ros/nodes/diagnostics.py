"""A minimal diagnostic status publisher (diagnostic_updater is not on PyPI).

A node reports its health as (level, message, key/values) from a callback; this publishes
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` at a low rate, and at once when a
node reports a problem event (a rejected input), so rqt_robot_monitor shows it.

Every status also carries ``unmatched_subscribers``: the node's topics that have a
subscriber in the graph its publisher has not matched yet (what that subscriber would miss
if the node published now). Discovery is not symmetric: a subscriber can see a publisher
seconds before the publisher sees it, so only the publishing side can say this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

# Levels as ints (the message field is a single byte).
OK, WARN, ERROR, STALE = 0, 1, 2, 3

Report = tuple[int, str, Mapping[str, Any]]

#: Published by every node; not part of what the nodes exchange.
_INFRASTRUCTURE_TOPICS = ("/rosout", "/parameter_events")


def unmatched_subscribers(node: Node) -> list[str]:
    """Topics of ``node``'s publishers with fewer matched subscriptions than the graph has."""
    return sorted({pub.topic_name for pub in node.publishers
                   if pub.topic_name not in _INFRASTRUCTURE_TOPICS
                   and pub.get_subscription_count() < node.count_subscribers(pub.topic_name)})


class Diagnostics:
    """Publishes ``report()`` every ``period`` seconds, plus counted problem events."""

    def __init__(self, node: Node, report: Callable[[], Report], period: float = 1.0,
                 hardware_id: str = "") -> None:
        self._node, self._report = node, report
        self._hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lock = threading.Lock()
        self.problems: dict[str, int] = {}
        self.last_problem = ""
        # Wall-clock period: under sim time a paused lockstep clock must not silence health.
        node.create_timer(period, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def problem(self, kind: str, message: str) -> None:
        """Count and log a rejected input or fault, and publish a WARN status at once."""
        with self._lock:
            self.problems[kind] = self.problems.get(kind, 0) + 1
            self.last_problem = f"{kind}: {message}"
        self._node.get_logger().warning(f"{kind}: {message}")
        self.publish(min_level=WARN)

    def publish(self, min_level: int = OK) -> None:
        level, message, values = self._report()
        with self._lock:
            problems = dict(self.problems)
            last = self.last_problem
        if last and min_level > level:
            level, message = min_level, last
        status = DiagnosticStatus(
            level=bytes([level]),
            name=f"{self._node.get_namespace().rstrip('/')}/{self._node.get_name()}",
            message=message, hardware_id=self._hardware_id)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        status.values += [KeyValue(key=f"rejected_{k}", value=str(n)) for k, n in problems.items()]
        status.values.append(KeyValue(key="unmatched_subscribers",
                                      value=",".join(unmatched_subscribers(self._node))))
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
