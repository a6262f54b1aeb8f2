"""``mcap_recorder``: the stack's topics into one MCAP file in the run's folder.

Subscribes to the topics of ``topics`` (names relative to the node's namespace, ``hand`` in
the launch files) and writes every message, as the CDR bytes that arrived (never
deserialized), to ``<output_dir>/<file_prefix>_<UTC start time>.mcap``: one channel per
topic (the resolved name, e.g. ``/hand/task_state``), one schema per type with its complete
``ros2msg`` definition, as rosbag2 records it (``mbrl_ros.results.mcap_writer``). Each
message's ``log_time`` is its receive time (the middleware's reception timestamp, system
clock, ns since the epoch; raised to the channel's previous one where a topic with several
publishers hands over a sample from one writer after a later-received one from another, so
each channel's messages are in ``log_time`` order) and its ``publish_time`` the stamp of
its ``std_msgs/Header`` (ROS time: simulated time in lockstep) for types whose first field
is a header, else the receive time again. Foxglove and ``ros2 bag play`` play the file by
``log_time``.

Chunked, compressed (zstd by default): a chunk is closed and handed to the operating system
when its uncompressed size passes ``chunk_size_kib`` or ``chunk_interval_s`` seconds (wall
clock) after the previous one was closed, whichever comes first. Files are never rotated: a
recorder writes one file from start to stop, and a restarted one (respawn) starts another.

- SIGINT / SIGTERM: the open chunk, the indexes and the footer are written and the file is
  closed; nothing is lost.
- SIGKILL (or a crash of the process): the file keeps every closed chunk. Lost are the open
  chunk, i.e. the messages received during the last ``chunk_interval_s`` seconds at most
  (1 s by default; never more than ``chunk_size_kib`` of data), and the summary section
  (chunk and message indexes, statistics, footer). Readers that need the summary refuse
  such a file; ``mbrl-ros mcap-recover IN OUT`` (``recover_mcap``) rewrites it, with
  everything up to its last complete chunk, into a complete file, and ``read_mcap`` reads it
  as it is. A machine that loses power can lose more (the recorder does not fsync).

``~/get_status`` (``mbrl_ros/srv/GetStatus``) answers ``state`` recording | failed and, in
``values``, ``unmatched_topics``: the recorded topics that have a publisher in the graph not
yet matched by the recorder's subscription (what it would miss now; the experiment manager,
given ``recorder``, starts the first episode only once this is empty), and the counters of
the diagnostics.

Topics named in ``topics`` but not published stay channels without messages. The known
stack topics (``STACK_TOPICS``) come with their types; any other topic is given as
``name:pkg/msg/Type``.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile

from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import ERROR, OK, Diagnostics
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.results.mcap_writer import (
    COMPRESSIONS,
    McapRecordingWriter,
    cdr_header_stamp_ns,
    full_type,
    leads_with_header,
)
from mbrl_ros.srv import GetStatus

_FLOAT64 = "std_msgs/msg/Float64"
#: The stack's topics (docs/node_graph.md), relative to the namespace, with their types.
STACK_TOPICS: dict[str, str] = {
    "joint_states": "sensor_msgs/msg/JointState",
    "joint_commands": "std_msgs/msg/Float64MultiArray",
    "object_states": "mbrl_ros/msg/ObjectStates",
    "task_state": "mbrl_ros/msg/TaskState",
    "planned_action": "mbrl_ros/msg/PlannedAction",
    "goal_schedule": "mbrl_ros/msg/GoalSchedule",
    "scene_markers": "visualization_msgs/msg/MarkerArray",
    "mpc_planner/plan_markers": "visualization_msgs/msg/MarkerArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "dynamics_trainer/metrics": "mbrl_ros/msg/TrainingMetrics",
    **{f"dynamics_trainer/{n}": _FLOAT64 for n in (
        "train_loss", "val_loss", "val_one_step_mse", "val_disagreement", "num_transitions")},
    **{f"mpc_planner/{n}": _FLOAT64 for n in (
        "latency_ms", "deadline_misses", "predicted_return", "disagreement", "model_version")},
    "state_estimator/latency_ms": _FLOAT64,
    **{f"experiment/{n}": _FLOAT64 for n in ("score", "return", "tracking_error")},
    # Known, not recorded by default: each model update carries the weights (megabytes), and
    # /clock repeats the stamps every message has.
    "model_update": "mbrl_ros/msg/ModelUpdate",
    "/clock": "rosgraph_msgs/msg/Clock",
}
DEFAULT_TOPICS = [t for t in STACK_TOPICS if t not in ("model_update", "/clock")]
#: Transient-local (latched) topics: subscribed so that the newest sample reaches a late
#: recorder too.
LATCHED_TOPICS = {"goal_schedule": conv.SCHEDULE_SUB_QOS, "model_update": conv.LATCHED_QOS}

PARAMS = [
    Param("output_dir", "runs/recording", "folder of the recording (the launch files: the run's "
          "folder, <runs_dir>/<run_name>); created if missing", read_only=True),
    Param("file_prefix", "recording", "the file is <output_dir>/<file_prefix>_<UTC start "
          "time>.mcap", read_only=True),
    Param("topics", list(DEFAULT_TOPICS), "topics to record: a known stack topic's name "
          "(relative to the namespace) or name:pkg/msg/Type", read_only=True),
    Param("chunk_size_kib", 1024, "a chunk is closed once its uncompressed size passes this",
          16, 1 << 20, read_only=True),
    Param("chunk_interval_s", 1.0, "and at the latest this many wall seconds after the last "
          "one: what a SIGKILL can lose at most", 0.05, 3600.0, read_only=True),
    Param("compression", "zstd", "compression of the chunks",
          choices=tuple(COMPRESSIONS), read_only=True),
    Param("queue_depth", conv.RECORDED_QOS_DEPTH, "subscription history depth (volatile "
          "topics): room for a burst while a chunk is written", 1, 100000, read_only=True),
]


def topic_spec(entry: str) -> tuple[str, str]:
    """``(topic, full type)`` of a ``topics`` entry; ValueError naming the problem."""
    name, sep, type_name = entry.partition(":")
    name = name.strip()
    if not name or name.startswith("~"):
        raise ValueError(f"topic entry {entry!r}: give a topic name (no private ~ names)")
    if not sep:
        if name not in STACK_TOPICS:
            raise ValueError(f"topic {name!r} is not a known stack topic: give its type as "
                             f"{name}:pkg/msg/Type (known: {', '.join(STACK_TOPICS)})")
        return name, STACK_TOPICS[name]
    return name, full_type(type_name.strip())


def topics_check(values: dict[str, Any]) -> str | None:
    """ParameterSet check of a ``topics`` list (the recorder's and the live view's)."""
    try:
        names = [topic_spec(e)[0] for e in values["topics"]]
    except ValueError as exc:
        return str(exc)
    if len(set(names)) != len(names):
        return f"topics lists a topic twice: {names}"
    return None


def message_class(type_name: str) -> type:
    package, namespace, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{namespace}"), name)


class McapRecorderNode(Node):
    """Raw subscriptions -> ``McapRecordingWriter``; a timer closes chunks."""

    def __init__(self) -> None:
        super().__init__("mcap_recorder")
        self.params = ParameterSet(self, PARAMS, checks=[topics_check])
        p = self.params.snapshot()
        self._lock = threading.Lock()
        self.failure = ""
        self.dropped = 0
        self.counts: dict[str, int] = {}
        self.writer = self._open(p)
        self.writer.add_metadata("mbrl_ros.recording", {
            "node": self.get_fully_qualified_name(), "namespace": self.get_namespace(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "log_time": "receive time (system clock, ns since the epoch), non-decreasing "
                        "per channel",
            "publish_time": "header.stamp (ROS time) where the type starts with a "
                            "std_msgs/Header, else the receive time",
            "topics": json.dumps(p["topics"])})
        self._recorded = []
        self._last_log_time: dict[int, int] = {}
        for entry in p["topics"]:
            name, type_name = topic_spec(entry)
            qos = LATCHED_TOPICS.get(name, QoSProfile(depth=p["queue_depth"]))
            # the resolved name of the topic, as every other node and tool shows it
            topic = self.resolve_topic_name(name)
            channel = self.writer.add_channel(topic, type_name)
            stamped = leads_with_header(self.writer.definition(type_name))
            self.counts[topic] = 0
            self._recorded.append(self.create_subscription(
                message_class(type_name), name, self._callback(topic, channel, stamped), qos,
                raw=True))
        self.create_service(GetStatus, "~/get_status", self._on_status)
        self.diagnostics = Diagnostics(self, self._health, hardware_id="mcap")
        self.params.report_to(self.diagnostics)
        self.create_timer(p["chunk_interval_s"], self._close_chunk,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"recording {len(self.counts)} topics to {self.writer.path} (chunks of "
            f"{p['chunk_size_kib']} KiB or {p['chunk_interval_s']:g} s, {p['compression']})")

    def _open(self, p: dict[str, Any]) -> McapRecordingWriter:
        folder = Path(p["output_dir"]).expanduser()
        stem = f"{p['file_prefix']}_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        for n in range(1, 1000):
            path = folder / (f"{stem}.mcap" if n == 1 else f"{stem}_{n}.mcap")
            try:
                return McapRecordingWriter(path, chunk_size=p["chunk_size_kib"] * 1024,
                                           compression=p["compression"])
            except FileExistsError:
                continue
        raise RuntimeError(f"no free file name for {folder / stem}.mcap")

    def _callback(self, topic: str, channel: int, stamped: bool):
        def on_message(data: bytes, info: Any) -> None:
            received = int(info.get("received_timestamp", 0)) if isinstance(info, dict) else 0
            received = received or time.time_ns()
            stamp = cdr_header_stamp_ns(data) if stamped else None
            with self._lock:
                if self.failure or self.writer is None:
                    self.dropped += 1
                    return
                received = max(received, self._last_log_time.get(channel, 0))
                self._last_log_time[channel] = received
                try:
                    self.writer.write(channel, data, received,
                                      received if stamp is None or stamp < 0 else stamp)
                    self.counts[topic] += 1
                except (OSError, ValueError) as exc:
                    self._fail(exc)

        return on_message

    def _close_chunk(self) -> None:
        with self._lock:
            if self.writer is None or self.failure:
                return
            try:
                self.writer.close_chunk()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.failure = f"writing {self.writer.path} failed: {exc}; recording stopped"
        self.get_logger().error(self.failure)

    def unmatched_topics(self) -> list[str]:
        """Recorded topics with more publishers in the graph than the subscription matched:
        a message published on them now may not reach the file."""
        return [sub.topic_name for sub in self._recorded
                if sub.get_publisher_count() < self.count_publishers(sub.topic_name)]

    def _on_status(self, _req: GetStatus.Request, res: GetStatus.Response):
        res.node = self.get_fully_qualified_name()
        status, _message, values = self._health()
        res.state = "failed" if status == ERROR else "recording"
        values["unmatched_topics"] = ",".join(self.unmatched_topics())
        res.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return res

    def _health(self):
        with self._lock:
            writer = self.writer
            values = {"file": writer.path if writer else "", "messages":
                      writer.messages if writer else 0, "chunks": writer.chunks if writer else 0,
                      "bytes": writer.bytes_written if writer else 0, "dropped": self.dropped,
                      "silent_topics": sum(1 for n in self.counts.values() if n == 0)}
        if self.failure:
            return ERROR, self.failure, values
        return OK, "recording", values

    def close(self) -> None:
        """Write the open chunk, the indexes and the footer (called on SIGINT/SIGTERM)."""
        with self._lock:
            writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
                self.get_logger().info(
                    f"closed {writer.path}: {writer.messages} messages in {writer.chunks} "
                    "chunks")
            except (OSError, ValueError) as exc:
                self.get_logger().error(f"closing {writer.path} failed: {exc}")


def main() -> int:
    return run_node(McapRecorderNode)

