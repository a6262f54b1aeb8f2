"""The live view: MarkerArray -> Foxglove SceneUpdate (ROS-free), and the ``foxglove_bridge``
node serving a running simulator over the Foxglove WebSocket protocol."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.processes import OutputProcess
from helpers.waiting import wait_for
from websockets.sync.client import connect

from mbrl_ros.results import foxglove_scene as fs
from mbrl_ros.results.foxglove_scene import MarkerData

BRIDGE = Path(sys.prefix) / "lib" / "mbrl_ros" / "foxglove_bridge"
# foxglove-sdk 0.30 speaks the Foxglove protocol under this name (foxglove.websocket.v1 is
# refused with HTTP 400); the frames are the same: advertise, subscribe, messageData.
SUBPROTOCOL = "foxglove.sdk.v1"


def _close(a, b, tol=1e-9):
    return all(abs(x - y) < tol for x, y in zip(a, b, strict=True))


def test_markers_become_scene_entities():
    markers = [
        MarkerData(ns="ball", id=0, type=fs.SPHERE, position=(0.1, 0.2, 0.3),
                   scale=(0.04, 0.04, 0.04), color=(1.0, 0.0, 0.0, 1.0), text="ball_0",
                   stamp_ns=3_500_000_000),
        MarkerData(ns="hand", id=1, type=fs.CYLINDER, orientation=(0.0, 0.0, 0.0, 0.0),
                   scale=(0.02, 0.02, 0.05)),
        MarkerData(ns="hand", id=2, type=fs.CUBE, scale=(0.1, 0.2, 0.3)),
        MarkerData(ns="plan/ball_0", id=0, type=fs.LINE_STRIP, scale=(0.004, 0.0, 0.0),
                   points=[(0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.1, 0.1, 0.0)]),
        MarkerData(ns="arrow", id=0, type=fs.ARROW, points=[(0.0, 0.0, 0.0), (0.0, 1.0, 0.0)],
                   scale=(0.01, 0.02, 0.2)),
        MarkerData(ns="targets", id=0, type=fs.SPHERE_LIST, position=(1.0, 0.0, 0.0),
                   points=[(0.0, 0.0, 0.0), (0.0, 0.0, 1.0)], scale=(0.01, 0.01, 0.01),
                   colors=[(0.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0)]),
        MarkerData(ns="label", id=0, type=fs.TEXT_VIEW_FACING, text="step 3",
                   scale=(0.0, 0.0, 0.05)),
        MarkerData(ns="mesh", id=0, type=fs.MESH_RESOURCE),
        MarkerData(ns="old", id=7, action=fs.DELETE),
    ]
    scene = fs.scene_entities(markers)
    by_id = {e["id"]: e for e in scene.entities}
    assert list(by_id) == ["ball/0", "hand/1", "hand/2", "plan/ball_0/0", "arrow/0",
                           "targets/0", "label/0"]
    assert scene.skipped == 1
    assert scene.deletions == [{"timestamp_ns": 0, "type": "matching_id", "id": "old/7"}]

    ball = by_id["ball/0"]
    assert ball["frame_id"] == "world" and ball["timestamp_ns"] == 3_500_000_000
    assert ball["metadata"]["name"] == "ball_0"
    (sphere,) = ball["spheres"]
    assert sphere["pose"]["position"] == {"x": 0.1, "y": 0.2, "z": 0.3}
    assert sphere["size"] == {"x": 0.04, "y": 0.04, "z": 0.04}
    assert sphere["color"] == {"r": 1.0, "g": 0.0, "b": 0.0, "a": 1.0}
    (cyl,) = by_id["hand/1"]["cylinders"]
    assert cyl["pose"]["orientation"] == {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}  # unset
    assert cyl["size"]["z"] == 0.05 and cyl["top_scale"] == cyl["bottom_scale"] == 1.0
    assert by_id["hand/2"]["cubes"][0]["size"] == {"x": 0.1, "y": 0.2, "z": 0.3}
    (line,) = by_id["plan/ball_0/0"]["lines"]
    assert line["type"] == "line_strip" and line["thickness"] == 0.004
    assert [p["x"] for p in line["points"]] == [0.0, 0.1, 0.1]
    (arrow,) = by_id["arrow/0"]["arrows"]
    # from the origin along +y: x rotated onto y, shaft + head = the distance
    q = arrow["pose"]["orientation"]
    assert _close((q["x"], q["y"], q["z"], q["w"]), (0.0, 0.0, 2 ** -0.5, 2 ** -0.5))
    assert abs(arrow["shaft_length"] + arrow["head_length"] - 1.0) < 1e-12
    assert arrow["head_length"] == 0.2 and arrow["shaft_diameter"] == 0.01
    spheres = by_id["targets/0"]["spheres"]
    assert [s["pose"]["position"]["z"] for s in spheres] == [0.0, 1.0]
    assert all(s["pose"]["position"]["x"] == 1.0 for s in spheres)  # the pose applied
    assert [s["color"]["b"] for s in spheres] == [0.0, 1.0]
    assert by_id["label/0"]["texts"][0]["text"] == "step 3"

    # DELETEALL drops what came before it and deletes every entity first
    again = fs.scene_entities([markers[0], MarkerData(action=fs.DELETEALL), markers[2]])
    assert [e["id"] for e in again.entities] == ["hand/2"]
    assert [d["type"] for d in again.deletions] == ["all"]

    # the SDK message: protobuf with the ids in it
    payload = fs.scene_update(scene).encode()
    assert isinstance(payload, bytes)
    for entity_id in by_id:
        assert entity_id.encode() in payload


class _Client:
    """A minimal Foxglove WebSocket client (the ``websockets`` package, sync API)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        assert ws.subprotocol == SUBPROTOCOL
        self.channels: dict[str, dict] = {}
        self.messages: dict[int, list[bytes]] = {}
        self.subscribed: dict[int, str] = {}

    def pump(self, timeout: float) -> None:
        """Read frames for up to ``timeout`` s (advertisements and messageData)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                return
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("op") == "advertise":
                    self.channels.update({c["topic"]: c for c in msg["channels"]})
            elif frame[0] == 0x01:  # messageData: sub id u32, log time u64, payload
                (sub_id,) = struct.unpack_from("<I", frame, 1)
                self.messages.setdefault(sub_id, []).append(bytes(frame[13:]))
            if self.subscribed and len(self.messages) >= len(self.subscribed):
                return

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = {i: t for i, t in enumerate(topics, start=1)}
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": self.channels[t]["id"]} for i, t in self.subscribed.items()]}))


def _stop(proc: OutputProcess) -> None:
    if proc.proc.poll() is None:
        proc.proc.send_signal(signal.SIGINT)
    try:
        proc.finish(30)
    except subprocess.TimeoutExpired:
        proc.proc.kill()
        proc.finish(10)


def test_bridge_serves_the_running_sim_over_websocket():
    sim = OutputProcess([sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
                         "sim.launch.yaml", "mode:=realtime"])
    bridge = OutputProcess([str(BRIDGE), "--ros-args", "-r", "__ns:=/hand",
                            "-p", "port:=0", "-p", "host:=127.0.0.1"])
    try:
        line = wait_for(lambda: next((ln for ln in bridge.lines if "ws://" in ln), None)
                        or bridge.proc.poll() is not None, 60, "the bridge's server")
        assert line is not True, f"the bridge ended:\n{bridge.tail()}"
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)", line).group(1))
        assert port > 0
        with connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL],
                     open_timeout=10) as ws:
            _check_the_stream(_Client(ws))
    finally:
        _stop(bridge)
        _stop(sim)
    assert bridge.proc.returncode == 0, bridge.tail()


def _check_the_stream(client: _Client) -> None:
    """The scene and joint_states channels are advertised, and messages arrive."""
    wanted = ["/hand/scene_markers", "/hand/joint_states"]

    def advertised():
        client.pump(0.2)
        return all(t in client.channels for t in wanted)

    wait_for(advertised, 30, f"advertisements of {wanted}", poll=0)
    scene_ch, joints_ch = (client.channels[t] for t in wanted)
    assert scene_ch["schemaName"] == "foxglove.SceneUpdate"
    assert scene_ch["encoding"] == "protobuf"
    assert joints_ch["encoding"] == "json"
    assert json.loads(joints_ch["schema"])["properties"]["position"]["type"] == "array"
    # the numeric topics (no publisher here) are advertised too, for Plot panels
    latency = client.channels["/hand/mpc_planner/latency_ms"]
    assert latency["schemaName"] == "std_msgs/msg/Float64"
    assert json.loads(latency["schema"])["properties"]["data"] == {"type": "number"}
    client.subscribe(wanted)

    def received():
        client.pump(0.5)
        return len(client.messages) == 2

    wait_for(received, 60, "a SceneUpdate and a joint_states message", poll=0)
    scene = client.messages[1][0]
    # protobuf: the entity ids of the sim's markers ("<role>/<index>") are in it
    assert re.search(rb"[a-z_]+/\d+", scene), scene[:200]
    assert len(scene) > 200
    joints = json.loads(client.messages[2][0])
    assert len(joints["position"]) > 10
    assert all(isinstance(v, float) for v in joints["position"])
    assert joints["header"]["frame_id"] is not None


@pytest.mark.parametrize("bad", ["no_such_topic"])
def test_bridge_refuses_an_unknown_topic_at_start(bad):
    from mbrl_ros.nodes.foxglove_bridge_node import topics_check

    assert "not a known stack topic" in topics_check({"topics": [bad]})
