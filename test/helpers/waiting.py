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
