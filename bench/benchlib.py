"""What every benchmark shares: machine facts, percentiles, logging, JSON and picture output.

Each ``bench/bench_*.py`` writes one ``bench/results/<name>.json`` (with the date, the
machine and the command that made it) and, where a picture says more, PNGs beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mbrl_ros.core.data.storage import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"

VERSIONED_PACKAGES = ("torch", "mujoco", "numpy", "rclpy", "pytorch_mppi", "torchrl",
                      "stable_baselines3")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and with what a result was measured (stored in every result file)."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: package_version(p) for p in VERSIONED_PACKAGES},
        "load_average": list(os.getloadavg()),
    }


def ros_environment(fresh_domain: bool = False) -> dict[str, str]:
    """Set this process's ROS environment (inherited by the nodes it starts): a random
    domain (always with ``fresh_domain``, else only if the caller set none), loopback
    discovery, Fast DDS with the stack's profile. Returns the ROS settings for the record."""
    env = os.environ
    if fresh_domain or "ROS_DOMAIN_ID" not in env:
        env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(101, 215))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    profile = Path(sys.prefix) / "share" / "mbrl_ros" / "config" / "fastdds_profiles.xml"
    if profile.is_file():
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    env["PYTHONUNBUFFERED"] = "1"
    return {k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                "RMW_IMPLEMENTATION") if k in env}


class ProbeNode:
    """A bench's own rclpy node in a private context, spun by a single-threaded executor in
    a daemon thread once ``start()`` is called (after the subscriptions exist). No rclpy
    signal handlers: Ctrl-C and SIGTERM must unwind the bench, which stops the nodes."""

    def __init__(self, name: str) -> None:
        import rclpy

        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)

    def start(self) -> None:
        import threading

        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, name="probe", daemon=True)
        self.thread.start()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> str:
    """The command that produced this result, for the README's tables."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no samples."""
    if len(samples) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max / mean of a list of numbers (e.g. latencies in ms)."""
    arr = np.asarray(samples, dtype=float)
    if arr.size == 0:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"),
                "mean": float("nan")}
    return {"n": int(arr.size), "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max()),
            "mean": float(arr.mean())}


class Logger:
    """``[bench_x HH:MM:SS] message`` lines, flushed (long benches show progress)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, message: str) -> None:
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def atomic_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (written and synced beside it first), so a
    run killed mid-write leaves the old file or the new one, never half of one."""
    atomic_write_text(path, text)


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` plus date, machine and command as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"date": now_iso(), "machine": machine_info(), "command": command_line(), **result}
    atomic_write_text(path, json.dumps(full, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result file")


def stamp(fig: Any, text: str) -> None:
    """Put the machine/date/command footnote on a matplotlib figure."""
    fig.text(0.01, 0.005, text, fontsize=7, color="0.35", ha="left", va="bottom")


def save_figure(fig: Any, path: str | Path, command: str | None = None, dpi: int = 110) -> None:
    """Stamp the footnote (date, machine, ``command``: this process's by default) on a laid
    out figure, save it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    stamp(fig, footnote(command_line() if command is None else command))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def footnote(command: str) -> str:
    info = machine_info()
    return (f"{dt.date.today().isoformat()}, {info['cores']}-core {info['cpu_model']}, "
            f"torch {info['versions']['torch']}; {command}")
