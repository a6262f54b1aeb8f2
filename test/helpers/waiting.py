"""Waiting on conditions with a timeout (tests never sleep blindly)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(poll)


class Inbox:
    """What a subscription received, in order: callbacks ``add``, the test waits for the
    first item that matches. Thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list = []

    def add(self, item) -> None:
        with self._lock:
            self._items.append(item)

    def wait_first(self, match: Callable[[object], bool], timeout: float, what: str):
        def find():
            with self._lock:
                return next((item for item in self._items if match(item)), None)
        return wait_for(find, timeout, what)


def call_service(client, request, what: str, timeout: float = 30.0,
                 idempotent: bool = False):
    """The response of ``client`` to ``request``, failing naming ``what`` after ``timeout``.

    Waits for the service first: a request sent before the server is matched is lost, and a
    node may create its services well after its parameter services. Even once matched, the
    server's response writer may not yet see this client (a DDS discovery race on a loaded
    machine) and the response is lost; an ``idempotent`` request (a status query) is then
    asked again every few seconds. Others are sent once: a second ``set_parameters`` would
    count a refused value twice."""
    deadline = time.monotonic() + timeout
    wait_for(lambda: client.wait_for_service(timeout_sec=0.1), timeout, f"the {what} service")
    while True:
        future = client.call_async(request)
        left = deadline - time.monotonic()
        try:
            return wait_for(lambda f=future: f.done() and f.result(),
                            min(3.0, left) if idempotent else left, what)
        except TimeoutError:
            client.remove_pending_request(future)
            if not idempotent or time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}") from None
