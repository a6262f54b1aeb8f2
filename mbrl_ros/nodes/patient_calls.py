"""Service calls and waits from a worker thread that outlast a restarting node.

A node killed mid-call stays in the DDS graph until its lease ends, and its respawned
successor never saw the request: a call not answered within ``attempt_s`` is sent again
until ``timeout``. Every wait ends early when the owner's stop event is set. Used by the
experiment manager, whose loop runs in its own thread while the executor spins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.node import Node

from mbrl_ros.srv import GetStatus

#: A service call not answered in this long is sent again.
CALL_ATTEMPT_S = 2.0
#: A quick status question (``try_status``): unanswered this long = the node is down.
STATUS_ATTEMPT_S = 1.0


class CallFailed(RuntimeError):
    """A node did not answer in time, a wait timed out, or the owner is stopping."""


class PatientCaller:
    """Calls and waits on behalf of ``node``'s worker thread (never from a callback)."""

    def __init__(self, node: Node, stop: threading.Event, startup_timeout_s: float) -> None:
        self.node, self.stop = node, stop
        self.startup_timeout_s = startup_timeout_s

    def call(self, client, request, timeout: float, what: str,
             attempt_s: float = CALL_ATTEMPT_S):
        """The response of ``client`` to ``request``. A server that does not answer within
        ``attempt_s`` is asked again until ``timeout``; ``attempt_s >= timeout`` asks once.
        Every request sent here must be safe to repeat."""
        deadline = time.monotonic() + timeout
        warned = False
        while True:
            remaining = deadline - time.monotonic()
            if self.stop.is_set():
                raise CallFailed("stopped")
            if remaining <= 0:
                raise CallFailed(f"{what}: no answer from {client.srv_name} in {timeout:g} s")
            if not client.wait_for_service(timeout_sec=min(remaining, 0.5)):
                continue
            future = client.call_async(request)
            until = time.monotonic() + min(attempt_s, remaining)
            while not future.done() and time.monotonic() < until and not self.stop.is_set():
                time.sleep(0.005)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
            if not warned and time.monotonic() < deadline and not self.stop.is_set():
                self.node.get_logger().warning(f"{what}: {client.srv_name} did not answer in "
                                               f"{attempt_s:g} s; asking again (restarting?)")
                warned = True

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """``condition()``'s first truthy value, polled every 10 ms for up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.stop.is_set():
                raise CallFailed("stopped")
            if time.monotonic() > deadline:
                raise CallFailed(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.01)

    def status(self, client) -> GetStatus.Response:
        """A node's status, waiting for it while it restarts (``startup_timeout_s``)."""
        return self.call(client, GetStatus.Request(), self.startup_timeout_s, "status")

    def try_status(self, client) -> GetStatus.Response | None:
        """One quick status request; None when it goes unanswered (the node is down)."""
        try:
            return self.call(client, GetStatus.Request(), STATUS_ATTEMPT_S, "status",
                             attempt_s=STATUS_ATTEMPT_S)
        except CallFailed:
            if self.stop.is_set():
                raise
            return None


def status_values(status: GetStatus.Response) -> dict[str, str]:
    """The ``values`` of a status answer as a dict."""
    return {kv.key: kv.value for kv in status.values}
