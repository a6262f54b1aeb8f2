"""Start, watch, respawn and stop the node processes of a launch plan.

- every node runs in its own process group with the launcher as parent; on Linux it also
  gets SIGTERM if the launcher dies, so children are never orphaned;
- each output line is prefixed with the node's name (``output: screen``) or written to a
  per-node log file (``output: log``), or both;
- SIGINT/SIGTERM to the launcher stop the nodes: SIGINT, then SIGTERM after
  ``sigterm_timeout``, then SIGKILL after ``sigkill_timeout`` (as ``ros2 launch`` does);
- a node with ``respawn`` is restarted after ``respawn_delay`` when it exits on its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import yaml

from mbrl_ros.launch import packages
from mbrl_ros.launch.launch_file import LaunchPlan, NodeSpec

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: rely on the launcher's own shutdown
        pass


def node_command(node: NodeSpec, params_dir: Path | None = None) -> list[str]:
    """The argv for ``node``, laid out as launch_ros lays it out: executable, its args,
    ``--ros-args`` and ``ros_args`` if any, then ``--ros-args`` with name, namespace,
    parameters (in launch-file order) and remaps.

    A name/value parameter goes into a parameter file in ``params_dir`` at its place, as
    launch_ros writes it; with ``params_dir=None`` (``--show``) it is written inline as
    ``-p name:=value`` instead, so nothing is left behind.
    """
    cmd = [str(packages.executable(node.package, node.executable)), *node.args]
    if node.ros_args is not None:
        cmd += ["--ros-args", *node.ros_args]
    cmd.append("--ros-args")
    if node.name is not None:
        cmd += ["-r", f"__node:={node.name}"]
    if node.namespace is not None:
        cmd += ["-r", f"__ns:={node.namespace}"]
    for entry in node.parameters:
        if isinstance(entry, str):
            cmd += ["--params-file", entry]
        elif params_dir is None:
            for name, value in entry.items():
                cmd += ["-p", f"{name}:={inline_yaml(value)}"]
        else:
            fd, path = tempfile.mkstemp(prefix=f"{node.label}_", suffix=".yaml", dir=params_dir)
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump({node.full_name or "/**": {"ros__parameters": entry}}, handle)
            cmd += ["--params-file", path]
    for src, dst in node.remaps:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def inline_yaml(value: object) -> str:
    """``value`` as one line of YAML (what ``-p name:=value`` reads back to the same value)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).rstrip("\n")
    return text[: -len("\n...")] if text.endswith("\n...") else text


class ManagedProcess:
    """One node: its process, output pumps and respawn bookkeeping."""

    def __init__(self, node: NodeSpec, cmd: list[str], env: dict[str, str], log_dir: Path,
                 emit: Callable[[str], None]) -> None:
        self.node, self.cmd, self.env, self.emit = node, cmd, env, emit
        self.log_path = log_dir / f"{node.label}.log"
        self.proc: subprocess.Popen | None = None
        self.restart_at: float | None = None
        self.starts = 0
        self._pumps: list[threading.Thread] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.starts += 1
        self.restart_at = None
        self.emit(f"[INFO] [launch]: process started [{self.node.label}-{self.starts}]: "
                  f"pid {self.proc.pid}")
        log = open(self.log_path, "a", buffering=1) if self.node.output in ("log", "both") else None
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, log), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[bytes], log: IO[str] | None) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self.node.output in ("screen", "both"):
                self.emit(f"[{self.node.label}] {line}")
            if log is not None:
                log.write(line + "\n")
        stream.close()

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def join_output(self, timeout: float = 2.0) -> None:
        for pump in self._pumps:
            pump.join(timeout)


class ProcessGroup:
    """Runs a ``LaunchPlan`` until its nodes end, a stop is requested, or ``exit_with`` ends."""

    def __init__(self, plan: LaunchPlan, exit_with: str | None = None,
                 duration: float | None = None, sigterm_timeout: float = 5.0,
                 sigkill_timeout: float = 5.0, emit: Callable[[str], None] | None = None) -> None:
        self.plan, self.exit_with, self.duration = plan, exit_with, duration
        self.sigterm_timeout, self.sigkill_timeout = sigterm_timeout, sigkill_timeout
        self._lock = threading.Lock()
        self.emit = emit or self._print
        self._stop = threading.Event()
        self.exit_code = 0
        labels = [n.label for n in plan.nodes]
        if exit_with is not None and exit_with not in labels:
            raise ValueError(f"--exit-with '{exit_with}' is not a node of this launch ({labels})")

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)

    def request_stop(self, *_: object) -> None:
        """Signal-handler-safe: ask the supervision loop to shut everything down."""
        self._stop.set()

    def run(self) -> int:
        """Start all nodes, supervise them, shut down; returns the launcher's exit code."""
        log_dir = Path(os.environ.get("ROS_LOG_DIR", Path.home() / ".ros" / "log"))
        log_dir = log_dir / time.strftime("mbrl_ros_launch_%Y%m%d-%H%M%S")
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "1"}
        with tempfile.TemporaryDirectory(prefix="mbrl_ros_launch_params_") as params_dir:
            procs = [
                ManagedProcess(node, node_command(node, Path(params_dir)),
                               {**env, **node.launch_env, **node.env},
                               log_dir, self.emit)
                for node in self.plan.nodes
            ]
            self.emit(f"[INFO] [launch]: logs in {log_dir}")
            try:
                for proc in procs:
                    proc.start()
                self._supervise(procs)
            finally:
                self._shutdown(procs)
        return self.exit_code

    def _supervise(self, procs: list[ManagedProcess]) -> None:
        end = None if self.duration is None else time.monotonic() + self.duration
        while not self._stop.wait(0.05):
            if end is not None and time.monotonic() >= end:
                self.emit(f"[INFO] [launch]: {self.duration:g} s elapsed, shutting down")
                return
            alive = 0
            for proc in procs:
                code = proc.poll()
                if code is None:
                    alive += 1
                    continue
                if proc.restart_at is None and proc.proc is not None:
                    self._report_exit(proc, code)
                    if proc.node.label == self.exit_with or proc.node.on_exit_shutdown:
                        self.exit_code = code
                        return
                    if proc.node.respawn:
                        proc.restart_at = time.monotonic() + proc.node.respawn_delay
                    else:
                        proc.proc = None
                if proc.restart_at is not None:
                    alive += 1
                    if time.monotonic() >= proc.restart_at:
                        proc.start()
            if alive == 0:
                return

    def _report_exit(self, proc: ManagedProcess, code: int) -> None:
        proc.join_output()
        kind = "finished cleanly" if code == 0 else "died"
        self.emit(f"[{'INFO' if code == 0 else 'ERROR'}] [launch]: process [{proc.node.label}] "
                  f"{kind} [exit code {code}]")

    def _shutdown(self, procs: list[ManagedProcess]) -> None:
        running = [p for p in procs if p.poll() is None]
        for sig, timeout in ((signal.SIGINT, self.sigterm_timeout),
                             (signal.SIGTERM, self.sigkill_timeout), (signal.SIGKILL, 5.0)):
            if not running:
                break
            for proc in running:
                proc.signal(sig)
            deadline = time.monotonic() + timeout
            while running and time.monotonic() < deadline:
                running = [p for p in running if p.poll() is None]
                time.sleep(0.02)
            if running and sig != signal.SIGKILL:
                names = ", ".join(p.node.label for p in running)
                self.emit(f"[WARN] [launch]: still running after {signal.Signals(sig).name}: "
                          f"{names}; escalating")
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is not None:
                proc.join_output()


def install_signal_handlers(group: ProcessGroup) -> None:
    """Route SIGINT/SIGTERM to a clean stop of ``group``."""
    signal.signal(signal.SIGINT, group.request_stop)
    signal.signal(signal.SIGTERM, group.request_stop)

