"""``foxglove_bridge``: a live view of the stack in Foxglove, without a ROS desktop.

Runs a Foxglove WebSocket server (the ``foxglove-sdk`` package; WebSocket subprotocol
``foxglove.sdk.v1``, the Foxglove app's current one) on ``host``:``port`` and forwards the
stack's topics to it: open https://app.foxglove.dev (or Foxglove desktop), "Open connection", ``ws://<host>:<port>``.

- The MarkerArray topics (``scene_markers``: hand, balls or cube, targets;
  ``mpc_planner/plan_markers``: the planned ball paths) become ``foxglove.SceneUpdate``
  channels of the same (resolved) names, for the 3D panel (``mbrl_ros.results.
  foxglove_scene`` converts them).
- Every other topic becomes a JSON channel of the same name whose messages are the ROS
  message as a JSON object (field names as in the .msg), with a JSON schema derived from the
  message type (schema name: the ROS type, e.g. ``std_msgs/msg/Float64``): a Plot panel
  plots e.g. ``/hand/mpc_planner/latency_ms.data`` or ``/hand/joint_states.position[0]``.

Nothing is converted while no client is subscribed to a channel (``has_sinks``). The known
topics are the recorder's (``mcap_recorder_node.STACK_TOPICS``); others as
``name:pkg/msg/Type``. Listening on 127.0.0.1 (the default) serves this computer only; give
``host:=0.0.0.0`` to serve others (no authentication: a trusted network only).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile

from mbrl_ros.nodes.diagnostics import ERROR, OK, Diagnostics
from mbrl_ros.nodes.mcap_recorder_node import (
    DEFAULT_TOPICS,
    LATCHED_TOPICS,
    message_class,
    topic_spec,
    topics_check,
)
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.results.foxglove_scene import MarkerData, scene_entities, scene_update

MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

PARAMS = [
    Param("host", "127.0.0.1", "address the WebSocket server listens on (0.0.0.0: every "
          "interface; no authentication)", read_only=True),
    Param("port", 8765, "TCP port of the WebSocket server (0: any free port, logged at start)",
          0, 65535, read_only=True),
    Param("topics", list(DEFAULT_TOPICS), "topics to forward: a known stack topic's name "
          "(relative to the namespace) or name:pkg/msg/Type", read_only=True),
    Param("queue_depth", 10, "subscription history depth (volatile topics)", 1, 10000,
          read_only=True),
]


# --- ROS message -> JSON ------------------------------------------------------------------

_INTEGER = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
            "byte", "octet", "char")


def _plain(value: Any) -> Any:
    if hasattr(value, "get_fields_and_field_types"):
        return message_to_dict(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN/inf
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy arrays and array.array
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def message_to_dict(msg: Any) -> dict[str, Any]:
    """A ROS message as JSON-ready data (nested messages as objects, arrays as lists)."""
    return {name: _plain(getattr(msg, name)) for name in msg.get_fields_and_field_types()}


def _type_schema(type_str: str) -> dict[str, Any]:
    base, _, rest = type_str.partition("[")
    if rest or type_str.startswith("sequence<"):
        inner = (type_str[len("sequence<"):].rsplit(">", 1)[0].split(",")[0]
                 if type_str.startswith("sequence<") else base)
        return {"type": "array", "items": _type_schema(inner)}
    base = base.split("<")[0]
    if base in ("float", "double", "float32", "float64"):
        return {"type": "number"}
    if base in _INTEGER:
        return {"type": "integer"}
    if base == "boolean":
        return {"type": "boolean"}
    if base in ("string", "wstring"):
        return {"type": "string"}
    if "/" in base:
        package, name = base.split("/", 1)
        return json_schema(message_class(f"{package}/msg/{name.split('/')[-1]}"))
    return {}


def json_schema(cls: type) -> dict[str, Any]:
    """A JSON schema of ``message_to_dict``'s output for a ROS message class."""
    fields = cls.get_fields_and_field_types()
    return {"type": "object",
            "properties": {name: _type_schema(t) for name, t in fields.items()}}


def marker_data(m: Any) -> MarkerData:
    """``visualization_msgs/Marker`` -> ``MarkerData``."""
    p, o, s, c = m.pose.position, m.pose.orientation, m.scale, m.color
    stamp = m.header.stamp
    return MarkerData(
        ns=m.ns, id=m.id, type=m.type, action=m.action, frame_id=m.header.frame_id,
        stamp_ns=stamp.sec * 1_000_000_000 + stamp.nanosec,
        position=(p.x, p.y, p.z), orientation=(o.x, o.y, o.z, o.w), scale=(s.x, s.y, s.z),
        color=(c.r, c.g, c.b, c.a), points=[(q.x, q.y, q.z) for q in m.points],
        colors=[(q.r, q.g, q.b, q.a) for q in m.colors], text=m.text,
        lifetime_ns=m.lifetime.sec * 1_000_000_000 + m.lifetime.nanosec,
        frame_locked=m.frame_locked)


class FoxgloveBridgeNode(Node):
    """ROS subscriptions -> foxglove-sdk channels -> the WebSocket server."""

    def __init__(self) -> None:
        super().__init__("foxglove_bridge")
        import foxglove
        from foxglove.channels import SceneUpdateChannel

        self.params = ParameterSet(self, PARAMS, checks=[topics_check])
        p = self.params.snapshot()
        self._lock = threading.Lock()
        self.forwarded: dict[str, int] = {}
        self.failure = ""
        self.server = foxglove.start_server(name=f"mbrl_ros {self.get_namespace()}",
                                            host=p["host"], port=p["port"])
        self._subs = []
        for entry in p["topics"]:
            name, type_name = topic_spec(entry)
            topic = self.resolve_topic_name(name)
            cls = message_class(type_name)
            if type_name == MARKER_ARRAY:
                channel: Any = SceneUpdateChannel(topic)
                callback = self._scene_callback(topic, channel)
            else:
                schema = foxglove.Schema(name=type_name, encoding="jsonschema",
                                         data=json.dumps(json_schema(cls)).encode())
                channel = foxglove.Channel(topic, schema=schema, message_encoding="json",
                                           metadata={"ros_type": type_name})
                callback = self._json_callback(topic, channel)
            self.forwarded[topic] = 0
            qos = LATCHED_TOPICS.get(name, QoSProfile(depth=p["queue_depth"]))
            self._subs.append(self.create_subscription(cls, name, callback, qos))
        self.diagnostics = Diagnostics(self, self._health, hardware_id="foxglove")
        self.params.report_to(self.diagnostics)
        # the actual port (port 0 picks a free one); tests and users read it from this line
        self.get_logger().info(
            f"Foxglove live view on ws://{p['host']}:{self.server.port} "
            f"({len(self.forwarded)} topics)")

    def _scene_callback(self, topic: str, channel: Any):
        def on_message(msg: Any) -> None:
            if not channel.has_sinks():
                return
            try:
                update = scene_update(scene_entities([marker_data(m) for m in msg.markers]))
                channel.log(update)
            except Exception as exc:  # a bad message must not stop the node
                self._fail(topic, exc)
                return
            with self._lock:
                self.forwarded[topic] += 1

        return on_message

    def _json_callback(self, topic: str, channel: Any):
        def on_message(msg: Any) -> None:
            if not channel.has_sinks():
                return
            try:
                channel.log(message_to_dict(msg))
            except Exception as exc:  # as above
                self._fail(topic, exc)
                return
            with self._lock:
                self.forwarded[topic] += 1

        return on_message

    def _fail(self, topic: str, exc: Exception) -> None:
        with self._lock:
            first = not self.failure
            self.failure = f"forwarding {topic} failed: {exc}"
        if first:
            self.get_logger().error(self.failure)

    def _health(self):
        with self._lock:
            values = {"port": self.server.port, "messages": sum(self.forwarded.values()),
                      "silent_topics": sum(1 for n in self.forwarded.values() if n == 0)}
            failure = self.failure
        if failure:
            return ERROR, failure, values
        return OK, "serving", values

    def close(self) -> None:
        """Stop the WebSocket server (called on SIGINT/SIGTERM)."""
        self.server.stop()


def main() -> int:
    return run_node(FoxgloveBridgeNode)
