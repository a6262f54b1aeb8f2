"""``visualization_msgs/Marker`` contents -> Foxglove ``SceneUpdate`` (no ROS needed).

The live view (``foxglove_bridge`` node) shows the scene markers of the simulator and the
planner in Foxglove's 3D panel as ``foxglove.SceneUpdate``. This module does the conversion
on plain data: ``MarkerData`` holds what a Marker holds (the node fills it from the ROS
message), ``scene_entities`` turns a list of them into plain dicts laid out as Foxglove's
``SceneEntity`` / ``SceneEntityDeletion`` schemas, and ``scene_update`` builds the SDK's
``foxglove.messages.SceneUpdate`` from those dicts.

One marker is one entity, ``id`` ``"<ns>/<id>"`` (a marker republished with the same
namespace and id replaces the entity, as in RViz). Types:

- SPHERE, CUBE, CYLINDER -> one sphere / cube / cylinder primitive (Marker scale = size;
  a cylinder's axis is z in both);
- ARROW -> one arrow: along the pose's x axis with scale (length, shaft diameter, head
  diameter), or from ``points[0]`` to ``points[1]`` (scale.x shaft diameter, scale.y head
  diameter, scale.z head length; 0 picks a proportion of the length);
- LINE_STRIP, LINE_LIST -> one line primitive (thickness scale.x, per-point colours kept);
- SPHERE_LIST, POINTS, CUBE_LIST -> one sphere / cube per point (pose applied to the
  points);
- TEXT_VIEW_FACING -> a billboard text (font size scale.z);
- TRIANGLE_LIST -> a triangle list;
- MESH_RESOURCE and unknown types are skipped (counted in ``skipped``).

Action DELETE becomes a deletion of the matching id, DELETEALL a deletion of everything
(placed before the entities of the same update, so "delete all, then add" works).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# visualization_msgs/Marker constants
ARROW, CUBE, SPHERE, CYLINDER, LINE_STRIP, LINE_LIST, CUBE_LIST, SPHERE_LIST, POINTS = range(9)
TEXT_VIEW_FACING, MESH_RESOURCE, TRIANGLE_LIST = 9, 10, 11
ADD, DELETE, DELETEALL = 0, 2, 3

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]  # x, y, z, w
Rgba = tuple[float, float, float, float]


@dataclass
class MarkerData:
    """The fields of a ``visualization_msgs/Marker`` that the scene uses (SI units)."""

    ns: str = ""
    id: int = 0
    type: int = SPHERE
    action: int = ADD
    frame_id: str = "world"
    stamp_ns: int = 0
    position: Vec3 = (0.0, 0.0, 0.0)
    orientation: Quat = (0.0, 0.0, 0.0, 1.0)
    scale: Vec3 = (1.0, 1.0, 1.0)
    color: Rgba = (1.0, 1.0, 1.0, 1.0)
    points: list[Vec3] = field(default_factory=list)
    colors: list[Rgba] = field(default_factory=list)
    text: str = ""
    lifetime_ns: int = 0  # 0: until replaced or deleted
    frame_locked: bool = False


@dataclass
class SceneData:
    """A converted MarkerArray: plain dicts in the layout of Foxglove's schemas."""

    entities: list[dict[str, Any]]
    deletions: list[dict[str, Any]]
    skipped: int = 0


def entity_id(m: MarkerData) -> str:
    return f"{m.ns}/{m.id}"


def _pose(position: Vec3, orientation: Quat) -> dict[str, Any]:
    q = _normalized(orientation)
    return {"position": _vec(position), "orientation": dict(zip("xyzw", q, strict=True))}


def _vec(v: Vec3) -> dict[str, float]:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def _color(c: Rgba) -> dict[str, float]:
    return dict(zip("rgba", (float(v) for v in c), strict=True))


def _normalized(q: Quat) -> Quat:
    n = math.sqrt(sum(float(v) * float(v) for v in q))
    if n < 1e-12 or not math.isfinite(n):
        return (0.0, 0.0, 0.0, 1.0)  # an all-zero quaternion (unset) means identity, as RViz
    return tuple(float(v) / n for v in q)  # type: ignore[return-value]


def _rotate(q: Quat, v: Vec3) -> Vec3:
    x, y, z, w = _normalized(q)
    vx, vy, vz = v
    # v' = v + 2w (q x v) + 2 q x (q x v)
    cx, cy, cz = y * vz - z * vy, z * vx - x * vz, x * vy - y * vx
    ccx, ccy, ccz = y * cz - z * cy, z * cx - x * cz, x * cy - y * cx
    return (vx + 2 * (w * cx + ccx), vy + 2 * (w * cy + ccy), vz + 2 * (w * cz + ccz))


def _transform(m: MarkerData, p: Vec3) -> Vec3:
    r = _rotate(m.orientation, p)
    return (r[0] + m.position[0], r[1] + m.position[1], r[2] + m.position[2])


def _x_to(direction: Vec3) -> Quat:
    """The shortest rotation taking the x axis onto ``direction``."""
    n = math.sqrt(sum(d * d for d in direction))
    if n < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    dx, dy, dz = (d / n for d in direction)
    if dx < -1 + 1e-9:  # opposite: half a turn about z
        return (0.0, 0.0, 1.0, 0.0)
    # axis = x cross d = (0, -dz, dy), angle from cos = dx
    w = math.sqrt((1 + dx) / 2)
    s = 1 / (2 * w)
    return (0.0, -dz * s, dy * s, w)


def _arrow(m: MarkerData) -> dict[str, Any]:
    if len(m.points) >= 2:
        start = _transform(m, m.points[0])
        end = _transform(m, m.points[1])
        d = (end[0] - start[0], end[1] - start[1], end[2] - start[2])
        length = math.sqrt(sum(v * v for v in d))
        shaft_d, head_d, head_len = m.scale
        head_len = head_len if head_len > 0 else 0.23 * length
        head_len = min(head_len, length)
        return {"pose": _pose(start, _x_to(d)), "shaft_length": length - head_len,
                "shaft_diameter": shaft_d, "head_length": head_len,
                "head_diameter": head_d if head_d > 0 else 2 * shaft_d,
                "color": _color(m.color)}
    length, shaft_d, head_d = m.scale
    head_len = 0.23 * length
    return {"pose": _pose(m.position, m.orientation), "shaft_length": length - head_len,
            "shaft_diameter": shaft_d, "head_length": head_len, "head_diameter": head_d,
            "color": _color(m.color)}


def _point_colors(m: MarkerData) -> list[Rgba]:
    return list(m.colors) if len(m.colors) == len(m.points) else []


def _entity(m: MarkerData) -> dict[str, Any] | None:
    """One marker's entity, or None for a type that has no Foxglove primitive."""
    entity: dict[str, Any] = {
        "timestamp_ns": int(m.stamp_ns), "frame_id": m.frame_id, "id": entity_id(m),
        "lifetime_ns": int(m.lifetime_ns), "frame_locked": bool(m.frame_locked),
        "metadata": {"ns": m.ns, "marker_id": str(m.id), **({"name": m.text} if m.text and
                                                             m.type != TEXT_VIEW_FACING else {})},
        "arrows": [], "cubes": [], "spheres": [], "cylinders": [], "lines": [],
        "triangles": [], "texts": [],
    }
    pose = _pose(m.position, m.orientation)
    if m.type in (SPHERE, CUBE):
        entity["spheres" if m.type == SPHERE else "cubes"].append(
            {"pose": pose, "size": _vec(m.scale), "color": _color(m.color)})
    elif m.type == CYLINDER:
        entity["cylinders"].append({"pose": pose, "size": _vec(m.scale), "bottom_scale": 1.0,
                                    "top_scale": 1.0, "color": _color(m.color)})
    elif m.type == ARROW:
        entity["arrows"].append(_arrow(m))
    elif m.type in (LINE_STRIP, LINE_LIST):
        entity["lines"].append({
            "type": "line_strip" if m.type == LINE_STRIP else "line_list", "pose": pose,
            "thickness": float(m.scale[0]), "scale_invariant": False,
            "points": [_vec(p) for p in m.points], "color": _color(m.color),
            "colors": [_color(c) for c in _point_colors(m)]})
    elif m.type in (SPHERE_LIST, POINTS, CUBE_LIST):
        size = (m.scale[0], m.scale[1], m.scale[2] if m.type != POINTS else m.scale[0])
        colors = _point_colors(m)
        key = "cubes" if m.type == CUBE_LIST else "spheres"
        for i, p in enumerate(m.points):
            entity[key].append({"pose": _pose(_transform(m, p), m.orientation),
                                "size": _vec(size),
                                "color": _color(colors[i] if colors else m.color)})
    elif m.type == TEXT_VIEW_FACING:
        entity["texts"].append({"pose": pose, "billboard": True, "font_size": float(m.scale[2]),
                                "scale_invariant": False, "color": _color(m.color),
                                "text": m.text})
    elif m.type == TRIANGLE_LIST:
        entity["triangles"].append({"pose": pose, "points": [_vec(p) for p in m.points],
                                    "color": _color(m.color),
                                    "colors": [_color(c) for c in _point_colors(m)]})
    else:
        return None
    return entity


def scene_entities(markers: list[MarkerData]) -> SceneData:
    """A MarkerArray's markers as Foxglove entities and deletions (plain dicts)."""
    entities: list[dict[str, Any]] = []
    deletions: list[dict[str, Any]] = []
    skipped = 0
    for m in markers:
        if m.action == DELETEALL:
            entities.clear()  # RViz: DELETEALL clears what came before it in the array too
            deletions[:] = [{"timestamp_ns": int(m.stamp_ns), "type": "all", "id": ""}]
        elif m.action == DELETE:
            deletions.append({"timestamp_ns": int(m.stamp_ns), "type": "matching_id",
                              "id": entity_id(m)})
        else:
            entity = _entity(m)
            if entity is None:
                skipped += 1
            else:
                entities.append(entity)
    return SceneData(entities, deletions, skipped)


# --- the SDK's message objects -----------------------------------------------------------

def _fg_time(ns: int, cls: Any) -> Any:
    return cls(int(ns) // 1_000_000_000, int(ns) % 1_000_000_000)


def scene_update(scene: SceneData) -> Any:
    """``foxglove.messages.SceneUpdate`` of converted markers (``scene_entities``)."""
    from foxglove import messages as fm

    def vec(d: dict[str, float]) -> Any:
        return fm.Vector3(x=d["x"], y=d["y"], z=d["z"])

    def pose(d: dict[str, Any]) -> Any:
        return fm.Pose(position=vec(d["position"]), orientation=fm.Quaternion(**d["orientation"]))

    def color(d: dict[str, float]) -> Any:
        return fm.Color(**d)

    def point(d: dict[str, float]) -> Any:
        return fm.Point3(x=d["x"], y=d["y"], z=d["z"])

    line_types = {"line_strip": fm.LinePrimitiveLineType.LineStrip,
                  "line_list": fm.LinePrimitiveLineType.LineList}
    entities = []
    for e in scene.entities:
        entities.append(fm.SceneEntity(
            timestamp=_fg_time(e["timestamp_ns"], fm.Timestamp), frame_id=e["frame_id"],
            id=e["id"], lifetime=_fg_time(e["lifetime_ns"], fm.Duration),
            frame_locked=e["frame_locked"],
            metadata=[fm.KeyValuePair(key=k, value=v) for k, v in e["metadata"].items()],
            arrows=[fm.ArrowPrimitive(
                pose=pose(a["pose"]), shaft_length=a["shaft_length"],
                shaft_diameter=a["shaft_diameter"], head_length=a["head_length"],
                head_diameter=a["head_diameter"], color=color(a["color"]))
                for a in e["arrows"]],
            cubes=[fm.CubePrimitive(pose=pose(c["pose"]), size=vec(c["size"]),
                                    color=color(c["color"])) for c in e["cubes"]],
            spheres=[fm.SpherePrimitive(pose=pose(s["pose"]), size=vec(s["size"]),
                                        color=color(s["color"])) for s in e["spheres"]],
            cylinders=[fm.CylinderPrimitive(
                pose=pose(c["pose"]), size=vec(c["size"]), bottom_scale=c["bottom_scale"],
                top_scale=c["top_scale"], color=color(c["color"])) for c in e["cylinders"]],
            lines=[fm.LinePrimitive(
                type=line_types[ln["type"]], pose=pose(ln["pose"]), thickness=ln["thickness"],
                scale_invariant=ln["scale_invariant"], points=[point(p) for p in ln["points"]],
                color=color(ln["color"]), colors=[color(c) for c in ln["colors"]])
                for ln in e["lines"]],
            triangles=[fm.TriangleListPrimitive(
                pose=pose(t["pose"]), points=[point(p) for p in t["points"]],
                color=color(t["color"]), colors=[color(c) for c in t["colors"]])
                for t in e["triangles"]],
            texts=[fm.TextPrimitive(
                pose=pose(t["pose"]), billboard=t["billboard"], font_size=t["font_size"],
                scale_invariant=t["scale_invariant"], color=color(t["color"]), text=t["text"])
                for t in e["texts"]]))
    deletion_types = {"all": fm.SceneEntityDeletionType.All,
                      "matching_id": fm.SceneEntityDeletionType.MatchingId}
    deletions = [fm.SceneEntityDeletion(timestamp=_fg_time(d["timestamp_ns"], fm.Timestamp),
                                        type=deletion_types[d["type"]], id=d["id"])
                 for d in scene.deletions]
    return fm.SceneUpdate(deletions=deletions, entities=entities)
