"""Real ROS 2 plumbing for tests: an rclpy node spun in a background thread, and
helper processes started with the test's ROS environment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent.parent


@contextmanager
def spinning_node(name: str) -> Iterator:
    """An rclpy node spinning in a background executor thread for the duration of a test."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        from rclpy.action import ActionClient, ActionServer

        executor.shutdown()
        thread.join(timeout=5)  # the spin thread must be gone before the node is destroyed
        # destroy_node leaves action clients and servers, and their handles keep the node
        # (and the process's DDS participant) alive: later tests' `ros2 node list` saw it.
        for waitable in list(node.waitables):
            if isinstance(waitable, (ActionClient, ActionServer)):
                waitable.destroy()
        node.destroy_node()
        rclpy.shutdown(context=context)


def start_process(args: list[str], **kwargs) -> subprocess.Popen:
    """Start a Python helper process (``-m module`` or a script) in the tests' environment.

    It runs in the test directory: from the repository root, ``python -m`` would import the
    source tree's ``mbrl_ros`` (which lacks the generated interfaces) instead of the built one.
    """
    paths = [str(TEST_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(paths)}
    kwargs.setdefault("cwd", TEST_DIR)
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGINT, then kill after ``timeout``; returns everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return out
        except subprocess.TimeoutExpired:
            proc.kill()
    out, _ = proc.communicate()
    return out
