"""Where the palm is, from the two wrist joint angles: batched forward kinematics in torch.

PDDM's Baoding targets are attached to the palm, so their world position depends on the
wrist. A planner scores thousands of predicted states per step; it needs the palm pose of
each from the predicted wrist angles, on the planner's device and without MuJoCo. The
chain is short: a fixed forearm mount, the wrist body (hinge ``WRJ1``), the palm body
(hinge ``WRJ0``). :class:`WristChain` holds its constants; the defaults are the Adroit
ShadowHand as PDDM mounted it (forearm at (0, -0.54, 0.19) m rotated -1.57 rad about world
x, wrist 0.396 m up the forearm, palm 0.034 m past the wrist), which
``test/test_palm_kinematics.py`` checks against the compiled MuJoCo scene.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor


def _axis_rotation(axis: tuple[float, float, float], angle: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` about the unit ``axis`` by ``angle [...]`` (Rodrigues)."""
    x, y, z = axis
    c, s = torch.cos(angle), torch.sin(angle)
    t = 1.0 - c
    rows = (
        (t * x * x + c, t * x * y - s * z, t * x * z + s * y),
        (t * x * y + s * z, t * y * y + c, t * y * z - s * x),
        (t * x * z - s * y, t * y * z + s * x, t * z * z + c),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


@dataclass(frozen=True)
class WristChain:
    """Forearm mount -> wrist hinge -> palm hinge, in metres and radians.

    ``joint_indices``: positions of the two wrist angles (wrist-body hinge first) in the
    joint vector. ``mount_pos``/``mount_euler_x``: the forearm body in the world (a rotation
    about world x only, as PDDM's scenes mount it). ``wrist_offset``/``palm_offset``: each
    body's origin in its parent's frame; ``wrist_axis``/``palm_axis``: the hinge axes in
    their own body's frame (the hinges sit at the body origins).
    """

    joint_indices: tuple[int, int] = (0, 1)
    mount_pos: tuple[float, float, float] = (0.0, -0.54, 0.19)
    mount_euler_x: float = -1.57
    wrist_offset: tuple[float, float, float] = (0.0, 0.0, 0.396)
    wrist_axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    palm_offset: tuple[float, float, float] = (0.0, 0.0, 0.034)
    palm_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        values = (*self.mount_pos, self.mount_euler_x, *self.wrist_offset, *self.palm_offset)
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError("WristChain offsets and angles must be finite")
        for name, axis in (("wrist_axis", self.wrist_axis), ("palm_axis", self.palm_axis)):
            norm = math.sqrt(sum(float(a) ** 2 for a in axis))
            if len(axis) != 3 or abs(norm - 1.0) > 1e-6:
                raise ValueError(f"{name} must be a unit 3-vector, got {axis}")
        if len(self.joint_indices) != 2 or min(self.joint_indices) < 0:
            raise ValueError(f"joint_indices must be two indices >= 0, got {self.joint_indices}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> WristChain:
        """From a robot file's ``wrist_chain`` (lists become tuples); ValueError if bad."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"wrist_chain: unknown keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list | tuple) else v
                      for k, v in values.items()})

    def palm_pose(self, wrist_angles: Tensor) -> tuple[Tensor, Tensor]:
        """Palm origin ``[..., 3]`` and orientation ``[..., 3, 3]`` in the world.

        ``wrist_angles [..., 2]``: (wrist-body hinge, palm hinge) in radians. Computed in
        the angles' dtype and device.
        """
        q0, q1 = wrist_angles[..., 0], wrist_angles[..., 1]
        like = {"dtype": wrist_angles.dtype, "device": wrist_angles.device}
        mount = _axis_rotation((1.0, 0.0, 0.0), torch.tensor(self.mount_euler_x, **like))
        r_wrist = mount @ _axis_rotation(self.wrist_axis, q0)
        r_palm = r_wrist @ _axis_rotation(self.palm_axis, q1)
        p_wrist = torch.tensor(self.mount_pos, **like) + mount @ torch.tensor(
            self.wrist_offset, **like)
        p_palm = p_wrist + r_wrist @ torch.tensor(self.palm_offset, **like)
        return p_palm, r_palm

    def palm_points_to_world(self, joints: Tensor, points: Tensor) -> Tensor:
        """World positions ``[..., K, 3]`` of points given in the palm frame.

        ``joints [..., J]`` (the full joint vector; the wrist angles are read from
        ``joint_indices``), ``points [..., K, 3]``; leading dimensions broadcast.
        """
        idx = torch.tensor(self.joint_indices, device=joints.device)
        pos, rot = self.palm_pose(joints.index_select(-1, idx))
        points = points.to(joints.dtype)
        return pos.unsqueeze(-2) + torch.einsum("...ij,...kj->...ki", rot, points)


#: The Adroit ShadowHand mounted as in PDDM's scenes (the simulated hand's defaults).
ADROIT_WRIST_CHAIN = WristChain()
