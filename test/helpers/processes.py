"""A test's child process whose output (stdout and stderr) is collected line by line."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from typing import Any


class OutputProcess:
    """``subprocess.Popen(cmd, **popen)`` with stdout+stderr read into ``lines`` by a
    background thread, so a test can wait on what the process printed."""

    def __init__(self, cmd: Sequence[str], **popen: Any) -> None:
        self.proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, **popen)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def finish(self, timeout: float = 30) -> int:
        """Wait for the process to end; its exit code (all output read)."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code
