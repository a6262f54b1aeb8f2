"""Where the palm is, from the two wrist joint angles: batched forward kinematics in torch.

PDDM's Baoding targets are attached to the palm, so their world position depends on the
wrist. A planner scores thousands of predicted states per step; it needs the palm pose of
each from the predicted wrist angles, on the planner's device and without MuJoCo. The
chain is short: a fixed forearm mount, the wrist body (hinge ``WRJ1``), the palm body
(hinge ``WRJ0``). :class:`WristChain` holds its constants; the defaults are the Adroit
ShadowHand as PDDM mounted it (forearm at (0, -0.54, 0.19) m rotated -1.57 rad about world
x, wrist 0.396 m up the forearm, palm 0.034 m past the wrist), which
``test/test_sim_baoding_geometry.py`` checks against the compiled MuJoCo scene.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor


def _axis_terms(axis: tuple[float, float, float], dtype: torch.dtype, device: torch.device
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Rodrigues' constant matrices of ``axis``: identity, its cross-product matrix and its
    outer product, each ``[3, 3]``."""
    x, y, z = (float(a) for a in axis)
    like = {"dtype": dtype, "device": device}
    cross = torch.tensor(((0.0, -z, y), (z, 0.0, -x), (-y, x, 0.0)), **like)
    outer = torch.tensor(((x * x, x * y, x * z), (x * y, y * y, y * z), (x * z, y * z, z * z)),
                         **like)
    return torch.eye(3, **like), cross, outer


def _axis_rotation(axis: tuple[float, float, float], angle: Tensor,
                   terms: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` about the unit ``axis`` by ``angle [...]``
    (Rodrigues: cos I + sin [axis]x + (1 - cos) axis axis^T); ``terms``: that axis's
    ``_axis_terms`` in the angle's dtype and device, when already at hand."""
    eye, cross, outer = terms or _axis_terms(axis, angle.dtype, angle.device)
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    return c * eye + s * cross + (1.0 - c) * outer


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

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a few chains, kept for the process)
    def _constants(self, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
        """The chain's fixed parts as tensors of ``dtype`` on ``device``, made once (a
        planner asks for the palm pose at every horizon step)."""
        like = {"dtype": dtype, "device": device}
        mount = _axis_rotation((1.0, 0.0, 0.0), torch.tensor(self.mount_euler_x, **like))
        return {"mount": mount,
                "p_wrist": torch.tensor(self.mount_pos, **like) + mount @ torch.tensor(
                    self.wrist_offset, **like),
                "palm_offset": torch.tensor(self.palm_offset, **like),
                "wrist_terms": _axis_terms(self.wrist_axis, dtype, device),
                "palm_terms": _axis_terms(self.palm_axis, dtype, device),
                "joint_indices": torch.tensor(self.joint_indices, device=device)}

    def palm_pose(self, wrist_angles: Tensor) -> tuple[Tensor, Tensor]:
        """Palm origin ``[..., 3]`` and orientation ``[..., 3, 3]`` in the world.

        ``wrist_angles [..., 2]``: (wrist-body hinge, palm hinge) in radians. Computed in
        the angles' dtype and device.
        """
        k = self._constants(wrist_angles.dtype, wrist_angles.device)
        q0, q1 = wrist_angles[..., 0], wrist_angles[..., 1]
        r_wrist = k["mount"] @ _axis_rotation(self.wrist_axis, q0, k["wrist_terms"])
        r_palm = r_wrist @ _axis_rotation(self.palm_axis, q1, k["palm_terms"])
        p_palm = k["p_wrist"] + r_wrist @ k["palm_offset"]
        return p_palm, r_palm

    def palm_points_to_world(self, joints: Tensor, points: Tensor) -> Tensor:
        """World positions ``[..., K, 3]`` of points given in the palm frame.

        ``joints [..., J]`` (the full joint vector; the wrist angles are read from
        ``joint_indices``), ``points [..., K, 3]``; leading dimensions broadcast.
        """
        idx = self._constants(joints.dtype, joints.device)["joint_indices"]
        pos, rot = self.palm_pose(joints.index_select(-1, idx))
        points = points.to(joints.dtype)
        return pos.unsqueeze(-2) + torch.einsum("...ij,...kj->...ki", rot, points)


#: The Adroit ShadowHand mounted as in PDDM's scenes (the simulated hand's defaults).
ADROIT_WRIST_CHAIN = WristChain()
