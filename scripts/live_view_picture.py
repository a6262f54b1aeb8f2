#!/usr/bin/env python3
"""A picture of the live view: what a Foxglove client receives from ``live_view:=true``.

The Foxglove web app needs a sign-in that a headless browser cannot do, so this script is
the viewer instead. It starts ``baoding.launch.yaml live_view:=true`` on a tiny budget (a
temporary folder, a random ROS domain, localhost discovery), connects to the bridge's
WebSocket server exactly as Foxglove does (subprotocol ``foxglove.sdk.v1``, advertise ->
subscribe -> messageData), decodes what arrives with the schemas the server advertises
(protobuf ``foxglove.SceneUpdate``, JSON channels), and once it holds a scene from an MPC
episode together with the planned ball paths, renders them with matplotlib: a 3-D view of
the scene entities in the ``world`` frame beside a plot of a numeric channel.

    .venv/bin/python scripts/live_view_picture.py            # -> docs/images/live_view.png
    .venv/bin/python scripts/live_view_picture.py --metric /hand/mpc_planner/predicted_return
    .venv/bin/python scripts/live_view_picture.py --save msgs.json   # keep what arrived
    .venv/bin/python scripts/live_view_picture.py --replay msgs.json # draw it again, no stack

It runs for about a minute (start-up, six random episodes, a training, MPC episodes until
40 latency messages arrived) and stops the stack with SIGINT, as Ctrl-C does.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk's server and the Foxglove app speak
SCENE = "/hand/scene_markers"
PLAN = "/hand/mpc_planner/plan_markers"
TASK_STATE = "/hand/task_state"
IN_HAND_Z = 0.16  # m, world z: a ball above it rests in the hand (they start at 0.19)
HAND_ALPHA = 0.55  # the hand see-through, so that it hides no ball
VIEW = (45.0, -110.0)  # elevation, azimuth (degrees) of the 3-D panel: from above the wrist
# A tiny budget in real time (10 steps/s, as a person watches): 6 random episodes, a small
# model, then MPC episodes. The sim publishes its scene at 10 Hz (default 2): one per step.
OVERRIDES = """\
/**:
  ros__parameters:
    episode_length: 60
/**/shadow_hand_sim:
  ros__parameters:
    marker_rate_hz: 10.0
/**/dynamics_trainer:
  ros__parameters:
    ensemble:
      members: 2
      hidden: [64, 64]
    train:
      epochs: 20
      batch_size: 64
    min_transitions: 10
    max_val_loss: 1000000.0
/**/mpc_planner:
  ros__parameters:
    num_samples: 100
/**/experiment:
  ros__parameters:
    random_rollouts: 6
    iterations: 1
    rollouts_per_iteration: 6
    random_rollouts_per_iteration: 0
    render_rollouts: false
/**/foxglove_bridge:
  ros__parameters:
    port: 0
"""


def log(text: str) -> None:
    print(f"[live_view_picture {time.strftime('%H:%M:%S')}] {text}", flush=True)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``condition`` (which itself blocks briefly) until it is truthy; TimeoutError."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


# ---- protobuf, decoded with the schema the server advertises ------------------------------

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _wire(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, raw value) of each field of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


@dataclass
class _Field:
    name: str
    type: int  # FieldDescriptorProto.Type
    type_name: str
    repeated: bool


_FIXED = {1: "<d", 2: "<f", 6: "<Q", 7: "<I", 15: "<i", 16: "<q"}  # double float fixed*
_MESSAGE, _STRING, _BYTES, _BOOL = 11, 9, 12, 8


class ProtoSchema:
    """The message types of a ``google.protobuf.FileDescriptorSet`` (descriptor.proto's
    field numbers), enough to decode them into dicts."""

    def __init__(self, descriptor_set: bytes) -> None:
        self.messages: dict[str, dict[int, _Field]] = {}
        for number, _, file in _wire(descriptor_set):
            if number == 1:  # FileDescriptorSet.file
                fields = list(_wire(file))
                package = next((v.decode() for n, _, v in fields if n == 2), "")
                for n, _, msg in fields:
                    if n == 4:  # FileDescriptorProto.message_type
                        self._add(msg, f".{package}" if package else "")

    def _add(self, desc: bytes, scope: str) -> None:
        fields = list(_wire(desc))
        name = f"{scope}.{next(v.decode() for n, _, v in fields if n == 1)}"
        table: dict[int, _Field] = {}
        for n, _, value in fields:
            if n == 2:  # DescriptorProto.field
                f = {k: v for k, _, v in _wire(value)}
                table[f[3]] = _Field(f[1].decode(), f[5], f.get(6, b"").decode(), f.get(4) == 3)
            elif n == 3:  # DescriptorProto.nested_type
                self._add(value, name)
        self.messages[name] = table

    def decode(self, type_name: str, buf: bytes) -> dict[str, Any]:
        table = self.messages[type_name if type_name.startswith(".") else f".{type_name}"]
        out: dict[str, Any] = {}
        for number, wire, raw in _wire(buf):
            f = table.get(number)
            if f is None:
                continue
            if f.type == _MESSAGE:
                values = [self.decode(f.type_name, raw)]
            elif f.type in (_STRING, _BYTES):
                values = [raw.decode() if f.type == _STRING else raw]
            elif f.type in _FIXED:
                fmt = _FIXED[f.type]
                values = [v for (v,) in struct.iter_unpack(fmt, raw)]  # packed or one value
            elif wire == 2:  # packed varints
                values, i = [], 0
                while i < len(raw):
                    v, i = _varint(raw, i)
                    values.append(v)
            else:
                values = [bool(raw) if f.type == _BOOL else raw]
            if f.repeated:
                out.setdefault(f.name, []).extend(values)
            else:
                out[f.name] = values[-1]
        return out


# ---- the Foxglove WebSocket client ----------------------------------------------------------

@dataclass
class Received:
    """One decoded message as it arrived."""

    topic: str
    t: float  # seconds since the client connected
    data: dict[str, Any]


@dataclass
class Client:
    """A minimal Foxglove WebSocket client: advertisements in, subscriptions out, messages
    decoded by the advertised schema (protobuf or JSON)."""

    ws: Any
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscribed: dict[int, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    schemas: dict[str, ProtoSchema] = field(default_factory=dict)
    start: float = field(default_factory=time.monotonic)
    closed: bool = False

    def pump(self, timeout: float) -> None:
        """Handle the frames that arrive within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                return
            except ConnectionClosed:  # the stack ended (its budget done) or was stopped
                self.closed = True
                return
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("op") == "advertise":
                    self.channels.update({c["topic"]: c for c in msg["channels"]})
            elif frame[0] == 0x01:  # messageData: sub id u32, log time u64, payload
                (sub_id,) = struct.unpack_from("<I", frame, 1)
                topic = self.subscribed.get(sub_id)
                if topic is not None:
                    data = self._decode(self.channels[topic], bytes(frame[13:]))
                    self.received.append(Received(topic, time.monotonic() - self.start, data))

    def _decode(self, channel: dict[str, Any], payload: bytes) -> dict[str, Any]:
        if channel["encoding"] == "json":
            return json.loads(payload)
        if channel["encoding"] != "protobuf":
            raise ValueError(f"{channel['topic']}: encoding {channel['encoding']}")
        name = channel["schemaName"]
        if name not in self.schemas:  # a base64 FileDescriptorSet, as the protocol says
            self.schemas[name] = ProtoSchema(base64.b64decode(channel["schema"]))
        return self.schemas[name].decode(name, payload)

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = {i: t for i, t in enumerate(topics, start=1)}
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": self.channels[t]["id"]} for i, t in self.subscribed.items()]}))

    def of(self, topic: str) -> list[Received]:
        return [r for r in self.received if r.topic == topic]


# ---- the stack --------------------------------------------------------------------------------

class Stack:
    """``mbrl-ros launch`` in its own process group; its output collected line by line."""

    def __init__(self, tmp: Path) -> None:
        overrides = tmp / "overrides.yaml"
        overrides.write_text(OVERRIDES)
        cmd = [sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
               "baoding.launch.yaml", "mode:=realtime", "live_view:=true", "respawn:=false",
               f"overrides:={overrides}", f"runs_dir:={tmp / 'runs'}", "run_name:=live_view"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_LOG_DIR": str(tmp / "log"),
               "ROS_DOMAIN_ID": str(random.randint(1, 100)),
               "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        log(f"starting: {' '.join(cmd[1:])} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']})")
        # cwd: not the repository root, whose source tree would shadow the installed package
        self.proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.ws_port: int | None = None
        self._port_known = threading.Event()  # set on the bridge's line, or at the end
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.ws_port is None and (
                    m := re.search(r"Foxglove live view on ws://[\d.]+:(\d+)", line)):
                self.ws_port = int(m.group(1))
                self._port_known.set()
        self._port_known.set()

    def port(self, timeout: float) -> int:
        """The bridge's port, from its log line (port 0 in the overrides: a free one)."""
        if not self._port_known.wait(timeout):
            raise TimeoutError(f"no 'Foxglove live view on ws://' line in {timeout:.0f} s")
        if self.ws_port is None:
            raise RuntimeError("the stack ended:\n" + "\n".join(self.lines[-40:]))
        return self.ws_port

    def stop(self) -> int:
        """SIGINT to the process group (as Ctrl-C), SIGKILL if it is not gone in 30 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                log("the stack did not end in 30 s after SIGINT: SIGKILL")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


# ---- choosing and rendering ---------------------------------------------------------------

def _vec(d: dict[str, Any] | None, keys: str = "xyz", default: float = 0.0) -> np.ndarray:
    """Fields of a decoded message as an array (proto3: an absent field is 0)."""
    d = d or {}
    return np.array([float(d.get(k, default)) for k in keys])


def _rotation(q: dict[str, Any] | None) -> np.ndarray:
    x, y, z, w = _vec(q, "xyzw")
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n < 1e-12:
        return np.eye(3)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _meta(entity: dict[str, Any], key: str) -> str:
    return next((kv.get("value", "") for kv in entity.get("metadata", [])
                 if kv.get("key") == key), "")


def paths(plan: dict[str, Any]) -> dict[str, tuple[np.ndarray, tuple]]:
    """The plan's line primitives, by object name (namespace ``plan/<name>``): world-frame
    points (the line's pose applied) and colour."""
    out = {}
    for entity in plan.get("entities", []):
        for line in entity.get("lines", []):
            if len(line.get("points", [])) >= 2:
                pose = line.get("pose", {})
                pts = np.array([_vec(p) for p in line["points"]])
                pts = pts @ _rotation(pose.get("orientation")).T + _vec(pose.get("position"))
                name = _meta(entity, "ns").removeprefix("plan/") or entity["id"]
                out[name] = (pts, tuple(_vec(line.get("color"), "rgba")))
    return out


def balls(scene: dict[str, Any]) -> dict[str, np.ndarray]:
    """Centres of the scene's objects (namespace ``object``), by name."""
    return {_meta(e, "name") or e["id"]: _vec(s.get("pose", {}).get("position"))
            for e in scene.get("entities", []) if _meta(e, "ns") == "object"
            for s in e.get("spheres", [])}


def snapshot(client: Client) -> tuple[Received, Received] | None:
    """A scene and the plan made at the same control step (every planned path starts
    within 5 mm of its ball: a plan's path begins at the state it planned from), the newest
    pair with both balls in the hand, else the newest pair."""
    plans = [r for r in client.received if r.topic == PLAN and paths(r.data)]
    pairs = []
    for scene in (r for r in client.received if r.topic == SCENE):
        here = balls(scene.data)
        for plan in (p for p in plans if abs(p.t - scene.t) < 1.0):
            starts = {name: pts[0] for name, (pts, _) in paths(plan.data).items()}
            if starts and all(n in here and np.linalg.norm(here[n] - p) < 0.005
                              for n, p in starts.items()):
                pairs.append((scene, plan))
    held = [p for p in pairs if min(z for _, _, z in balls(p[0].data).values()) > IN_HAND_Z]
    return (held or pairs or [None])[-1]


def planned_from(client: Client, plan: Received) -> dict[str, Any]:
    """The task_state the plan started from (its ``<ball>_pos`` fields at the paths' starts),
    or {}."""
    starts = {name: pts[0] for name, (pts, _) in paths(plan.data).items()}
    for r in reversed(client.of(TASK_STATE)):
        state = np.asarray(r.data.get("state", []), dtype=float)
        at = {f["name"]: f["start"] for f in r.data.get("layout", [])}
        if r.t <= plan.t and starts and all(
                f"{n}_pos" in at and np.linalg.norm(state[at[f"{n}_pos"]:][:3] - p) < 1e-4
                for n, p in starts.items()):
            return r.data
    return {}


def _grid_quads(pts: np.ndarray) -> list[np.ndarray]:
    """Quads of an (rows, cols, 3) surface grid."""
    return [np.array([pts[i, j], pts[i, j + 1], pts[i + 1, j + 1], pts[i + 1, j]])
            for i in range(pts.shape[0] - 1) for j in range(pts.shape[1] - 1)]


def _sphere(size: np.ndarray) -> list[np.ndarray]:
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 17), np.linspace(0, np.pi, 10))
    unit = np.stack([np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)], axis=-1)
    return _grid_quads(unit * size / 2)


def _cylinder(size: np.ndarray) -> list[np.ndarray]:
    u, h = np.meshgrid(np.linspace(0, 2 * np.pi, 13), [-0.5, 0.5])
    return _grid_quads(np.stack([np.cos(u) / 2, np.sin(u) / 2, h], axis=-1) * size)


def _cube(size: np.ndarray) -> list[np.ndarray]:
    c = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    return [c[list(f)] * size for f in faces]


_SHAPES = {"spheres": _sphere, "cylinders": _cylinder, "cubes": _cube}


@dataclass
class Solid:
    """One scene entity as polygons in the world frame."""

    ns: str
    name: str
    polygons: list[np.ndarray]
    colour: tuple


def solids(scene: dict[str, Any]) -> list[Solid]:
    """The scene's spheres, cylinders and cubes (poses and sizes as received)."""
    out = []
    for entity in scene.get("entities", []):
        if entity.get("frame_id", "world") != "world":
            continue
        polygons, colour = [], (0.5, 0.5, 0.5, 1.0)
        for kind, shape in _SHAPES.items():
            for prim in entity.get(kind, []):
                pose = prim.get("pose", {})
                rot, pos = _rotation(pose.get("orientation")), _vec(pose.get("position"))
                colour = tuple(_vec(prim.get("color"), "rgba"))
                polygons += [quad @ rot.T + pos for quad in shape(_vec(prim.get("size")))]
        if polygons:
            out.append(Solid(_meta(entity, "ns") or entity["id"].rsplit("/", 1)[0],
                             _meta(entity, "name") or entity["id"], polygons, colour))
    return out


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown CPU"


def _scene_panel(ax: Any, scene: Received, plan: Received,
                 view: tuple[float, float]) -> list[Any]:
    """The 3-D panel: the scene's solids, the planned paths over them, names beside; the
    legend's entries."""
    parts, planned = solids(scene.data), paths(plan.data)
    focus = np.concatenate([np.concatenate(s.polygons) for s in parts if s.ns != "hand"]
                           + [pts for pts, _ in planned.values()])
    centre = (focus.min(0) + focus.max(0)) / 2
    half = max(0.09, (focus.max(0) - focus.min(0)).max() / 2 * 1.2)
    polys, faces, edges = [], [], []
    for s in parts:  # the hand is clipped to the box around the balls, targets and paths
        keep = [p for p in s.polygons if np.all(np.abs(p.mean(0) - centre) <= half)]
        hand = s.ns == "hand"
        polys += keep
        faces += [(*s.colour[:3], HAND_ALPHA if hand else s.colour[3])] * len(keep)
        edges += [(0, 0, 0, 0.06 if hand else 0.25)] * len(keep)
    ax.add_collection3d(Poly3DCollection(polys, facecolors=faces, edgecolors=edges,
                                         linewidths=0.3, zorder=1))
    hand_colour = next((s.colour for s in parts if s.ns == "hand"), (0.8, 0.7, 0.6, 1.0))
    legend: list[Any] = [Patch(color=hand_colour[:3], alpha=HAND_ALPHA,
                               label="hand (collision geoms)")]
    for s in parts:
        if s.ns != "hand":
            kind = "ball" if s.ns == "object" else "target"
            pts = np.concatenate(s.polygons)
            x, y, z = pts.mean(0)
            if kind == "ball":  # the name above a ball, beside a target
                ax.text(x, y, pts[:, 2].max() + 0.004, s.name, fontsize=8, zorder=8,
                        ha="center", va="bottom", weight="bold")
            else:
                ax.text(pts[:, 0].max() + 0.004, y, z, s.name, fontsize=7, zorder=8,
                        ha="left", va="center")
            legend.append(Line2D([], [], ls="", marker="o", ms=9 if kind == "ball" else 5,
                                 mfc=s.colour, mec="0.3", label=f"{s.name} ({kind})"))
    for name, (pts, colour) in planned.items():  # drawn over the solids
        ax.plot(*pts.T, color=colour, lw=2.5, zorder=5)
        ax.scatter(*pts[1:].T, color=colour, s=12, zorder=6, depthshade=False)
        legend.append(Line2D([], [], color=colour, lw=2.5, marker="o", ms=3,
                             label=f"planned path of {name} ({len(pts) - 1} steps)"))
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.2)
    ax.view_init(elev=view[0], azim=view[1])
    for axis in "xyz":
        getattr(ax, f"set_{axis}label")(f"{axis} (m)", fontsize=8)
    ax.tick_params(labelsize=7)
    return legend


def render(client: Client, scene: Received, plan: Received, metric: str, out: Path,
           view: tuple[float, float] = VIEW) -> None:
    """The picture: the 3-D panel beside a plot of ``metric``, as received."""
    plt.switch_backend("agg")  # files only, no display
    fig = plt.figure(figsize=(13, 6.8), dpi=110)
    grid = fig.add_gridspec(1, 2, width_ratios=(1.3, 1))
    ax = fig.add_subplot(grid[0], projection="3d", computed_zorder=False)
    legend = _scene_panel(ax, scene, plan, view)
    state = planned_from(client, plan)
    ax.set_title(f"3D panel (display frame world): {SCENE} and {PLAN}\nMPC episode "
                 f"{state.get('episode_id', '?')}, step {state.get('step', '?')}", fontsize=9)

    plot = fig.add_subplot(grid[1])
    series = client.of(metric)
    t0 = series[0].t if series else 0.0
    plot.plot([r.t - t0 for r in series], [float(r.data.get("data", math.nan)) for r in series],
              lw=1.0, marker=".", ms=4, color="tab:blue", label=f"{metric}.data")
    plot.axvline(plan.t - t0, color="tab:red", lw=1, ls="--",
                 label="the plan drawn on the left")
    plot.set_xlabel("time since its first message (s, as received)")
    plot.set_ylabel(f"{metric}.data")
    plot.set_title(f"Plot panel: {metric}.data, {len(series)} messages", fontsize=9)
    plot.grid(alpha=0.3)
    plot.legend(fontsize=8)
    fig.suptitle("What the live view (live_view:=true) serves, as a Foxglove client receives it "
                 f"over ws:// ({SUBPROTOCOL}):\n{SCENE} + {PLAN} (foxglove.SceneUpdate), "
                 f"{metric} (JSON), decoded and drawn with matplotlib", fontsize=10.5)
    fig.text(0.01, 0.012, f"{dt.date.today().isoformat()}, {cpu_model()}. baoding.launch.yaml "
             "mode:=realtime live_view:=true on a tiny budget (a model of 6 random episodes: "
             "its plans still drop the balls). Rendered by scripts/live_view_picture.py.",
             fontsize=7, color="0.35")
    fig.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 0.03), ncol=4,
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.94))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------

def capture(stack: Stack, metric: str, min_samples: int, timeout: float) -> Client:
    """Connect as a viewer, subscribe, and read until a scene with planned paths and
    ``min_samples`` messages of ``metric`` are in (or the stack ends)."""
    port = stack.port(120)
    log(f"bridge at ws://127.0.0.1:{port}; connecting as a Foxglove client")
    with connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], open_timeout=10,
                 max_size=None) as ws:
        assert ws.subprotocol == SUBPROTOCOL, ws.subprotocol
        client = Client(ws)
        _read(client, stack, metric, min_samples, timeout)
    return client


def _echo_experiment(stack: Stack, start: int) -> int:
    """Print the experiment's new episode lines (from ``start``); the next start."""
    lines = list(stack.lines)
    for line in lines[start:]:
        if "experiment" in line and "episode" in line:
            log("stack: " + line.strip())
    return len(lines)


def _read(client: Client, stack: Stack, metric: str, min_samples: int, timeout: float) -> None:
    """Subscribe once the topics are advertised; read until ready or the server closes."""
    topics = [SCENE, PLAN, metric, TASK_STATE]

    def advertised() -> bool:
        client.pump(0.2)
        if client.closed:
            raise RuntimeError("the server closed the connection before advertising")
        return all(t in client.channels for t in topics)

    wait_for(advertised, 30, f"advertisements of {topics}")
    log(f"{len(client.channels)} channels advertised; subscribing to {', '.join(topics)}")
    client.subscribe(topics)
    counts: dict[str, int] = {}
    echoed = 0

    def ready() -> bool:
        nonlocal echoed
        client.pump(1.0)
        echoed = _echo_experiment(stack, echoed)
        now = {t: len(client.of(t)) for t in topics}
        if now != counts:
            counts.update(now)
            log("received " + ", ".join(f"{t.rsplit('/', 1)[-1]} {n}" for t, n in now.items()))
        if client.closed:
            log("the server closed the connection (the stack ended: its budget is done)")
        return client.closed or (snapshot(client) is not None and now[metric] >= min_samples)

    wait_for(ready, timeout, f"a scene with planned paths and {min_samples} {metric} messages")


def run(args: argparse.Namespace) -> Client | None:
    """Start the stack, capture as a viewer, stop the stack; None on failure."""
    with tempfile.TemporaryDirectory(prefix="live_view_picture_") as tmp:
        stack = Stack(Path(tmp))
        try:
            return capture(stack, args.metric, args.min_samples, args.timeout)
        except (TimeoutError, RuntimeError) as exc:
            log(f"failed: {exc}")
            log("stack output (tail):\n" + textwrap.indent("\n".join(stack.lines[-30:]), "  "))
            return None
        finally:
            code = stack.stop()
            log(f"stack stopped (exit code {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "live_view.png")
    parser.add_argument("--metric", default="/hand/mpc_planner/latency_ms",
                        help="a numeric (std_msgs/Float64) channel for the plot panel")
    parser.add_argument("--min-samples", type=int, default=40,
                        help="messages of --metric to collect before stopping")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--save", type=Path, help="also write the decoded messages (JSON)")
    parser.add_argument("--replay", type=Path,
                        help="render the messages of a --save file (no stack)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.replay:
        client = Client(ws=None, received=[Received(**r) for r in json.loads(
            args.replay.read_text())])
    else:
        client = run(args)
        if client is None:
            return 1
    if args.save:
        args.save.write_text(json.dumps([vars(r) for r in client.received], default=str))
        log(f"wrote the {len(client.received)} decoded messages to {args.save}")
    pair = snapshot(client)
    if pair is None:
        log("no scene arrived together with a plan with ball paths")
        return 1
    scene, plan = pair
    log(f"scene of {len(scene.data.get('entities', []))} entities at {scene.t:.1f} s, plan with "
        f"{len(paths(plan.data))} paths at {plan.t:.1f} s; rendering {args.out}")
    render(client, scene, plan, args.metric, args.out)
    log(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
