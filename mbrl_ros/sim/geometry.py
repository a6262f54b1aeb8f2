"""Scene geometry as simple primitives, so a ROS node can publish a MarkerArray without a URDF.

Sizes follow ``visualization_msgs/Marker.scale``: full extents along the primitive's local
axes (sphere/ellipsoid: diameters; box: edge lengths; cylinder: diameter, diameter, height
along local z). Capsules have no Marker type, so by default each becomes a cylinder and two
end spheres; meshes become their bounding box. Poses are world frame, quaternions w-x-y-z.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from mbrl_ros.sim.scene import Scene

SPHERE, BOX, CYLINDER, CAPSULE = "sphere", "box", "cylinder", "capsule"
HAND_RGBA = (0.85, 0.68, 0.52, 1.0)
_G_SPHERE, _G_ELLIPSOID, _G_BOX, _G_CYLINDER, _G_CAPSULE, _G_MESH = (
    int(g) for g in (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_ELLIPSOID,
                     mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CYLINDER,
                     mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_MESH)
)


@dataclass(frozen=True)
class GeomPrimitive:
    """One drawable primitive. role: "hand", "object" or "target"."""

    name: str
    body: str
    role: str
    shape: str
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    rgba: tuple[float, float, float, float]


def scene_primitives(
    scene: Scene,
    data: mujoco.MjData,
    *,
    hand: bool = True,
    split_capsules: bool = True,
    hand_rgba: tuple[float, float, float, float] = HAND_RGBA,
) -> list[GeomPrimitive]:
    """Primitives for the hand's collision geoms and the scene's object/target geoms.

    Reads ``data.geom_xpos/geom_xmat``: kinematics must be current (``HandSim.geometry``
    takes care of that).
    """
    m = scene.model
    out: list[GeomPrimitive] = []
    if hand:
        for gid in _hand_collision_geoms(m):
            out += _primitives(m, data, gid, "hand", hand_rgba, split_capsules)
    objects = set(int(b) for b in scene.object_body_ids)
    for name in scene.marker_geoms:
        gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)
        role = "object" if int(m.geom_bodyid[gid]) in objects else "target"
        out += _primitives(m, data, gid, role, _geom_rgba(m, gid), split_capsules)
    return out


def _hand_collision_geoms(m: mujoco.MjModel) -> list[int]:
    forearm = m.body("forearm").id
    ids = []
    for gid in range(m.ngeom):
        body = int(m.geom_bodyid[gid])
        colliding = m.geom_contype[gid] != 0 or m.geom_conaffinity[gid] != 0
        if colliding and body != 0 and _descends_from(m, body, forearm):
            ids.append(gid)
    return ids


def _descends_from(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(m.body_parentid[body])
    return False


def _geom_rgba(m: mujoco.MjModel, gid: int) -> tuple[float, float, float, float]:
    mat = int(m.geom_matid[gid])
    rgba = m.mat_rgba[mat] if mat >= 0 else m.geom_rgba[gid]
    return tuple(float(c) for c in rgba)


def _primitives(
    m: mujoco.MjModel,
    d: mujoco.MjData,
    gid: int,
    role: str,
    rgba: tuple[float, float, float, float],
    split_capsules: bool,
) -> list[GeomPrimitive]:
    gtype = int(m.geom_type[gid])
    size = m.geom_size[gid]
    pos = d.geom_xpos[gid].copy()
    rot = d.geom_xmat[gid].reshape(3, 3)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, d.geom_xmat[gid])
    name = m.geom(gid).name or f"geom{gid}"
    body = m.body(int(m.geom_bodyid[gid])).name

    def prim(suffix: str, shape: str, extent, at=pos) -> GeomPrimitive:
        return GeomPrimitive(name + suffix, body, role, shape,
                             tuple(float(x) for x in extent), tuple(float(x) for x in at),
                             tuple(float(x) for x in quat), rgba)

    if gtype == _G_SPHERE:
        return [prim("", SPHERE, [2 * size[0]] * 3)]
    if gtype == _G_ELLIPSOID:
        return [prim("", SPHERE, 2 * size[:3])]
    if gtype == _G_BOX:
        return [prim("", BOX, 2 * size[:3])]
    if gtype == _G_CYLINDER:
        return [prim("", CYLINDER, (2 * size[0], 2 * size[0], 2 * size[1]))]
    if gtype == _G_CAPSULE:
        radius, half = size[0], size[1]
        if not split_capsules:
            return [prim("", CAPSULE, (2 * radius, 2 * radius, 2 * (half + radius)))]
        axis = rot[:, 2] * half
        return [
            prim("", CYLINDER, (2 * radius, 2 * radius, 2 * half)),
            prim("_cap0", SPHERE, [2 * radius] * 3, pos - axis),
            prim("_cap1", SPHERE, [2 * radius] * 3, pos + axis),
        ]
    if gtype == _G_MESH:
        centre, half = m.geom_aabb[gid, :3], m.geom_aabb[gid, 3:]
        return [prim("", BOX, 2 * half, pos + rot @ centre)]
    return []  # planes, height fields: not part of the hand or objects
