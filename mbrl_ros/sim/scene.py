"""What a task scene declares: its compiled model, names, layouts, goal handling, keyframe.

A scene is the only task-specific piece of the simulator. ``HandSim`` and the ROS node
work from these declarations, so a new task means a new ``Scene`` subclass plus a
``register_scene`` call, and nothing else.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import mujoco
import numpy as np

from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.core.tasks.layouts import StateLayout
from mbrl_ros.sim.adroit import HAND_JOINT_NAMES, check_hand_order


@dataclass(frozen=True)
class CameraView:
    """A free camera aimed at ``lookat`` (world, m); angles in degrees as MuJoCo's viewer."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


@dataclass(frozen=True)
class ObjectStates:
    """Tracked objects, one row per object (scene ``object_names`` order), world frame.

    pos (n, 3) m; quat (n, 4) w-x-y-z; linvel (n, 3) m/s of the body origin; angvel (n, 3)
    rad/s; qpos / qvel: the objects' own joint coordinates (PDDM read these directly, e.g.
    the cube's three hinge angles), laid out as ``Scene.object_qpos_names`` /
    ``object_qvel_names``.
    """

    pos: np.ndarray
    quat: np.ndarray
    linvel: np.ndarray
    angvel: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray


# Kinds of object coordinates, used to apply the right tracker noise to each.
COORD_POS, COORD_ROT, COORD_QUAT = "pos", "rot", "quat"
VEL_LIN, VEL_ANG = "lin", "ang"


class Scene(abc.ABC):
    """A compiled hand scene and everything a simulator or node needs to know about it.

    Subclasses set the class-level facts and implement the goal and observation hooks.
    Attributes after construction:
        name, model, keyframe (name) and key_id, joint_names (24, actuator order),
        object_names (tracked bodies), target_names (mocap bodies showing the goal),
        obs_layout (the task observation, PDDM's order), goal_shape, action_scale
        (PDDM: 0.9 Baoding, 1.0 cube), marker_geoms (object/target geoms to export),
        camera (a view that frames hand and objects).
    """

    goal_shape: tuple[int, ...] = ()
    goal_doc: str = ""
    #: frames a goal may be given in; the first is the default (an empty frame name)
    goal_frames: tuple[str, ...] = ("world",)
    action_scale: float = 0.9

    def __init__(
        self,
        name: str,
        model: mujoco.MjModel,
        *,
        keyframe: str,
        object_names: tuple[str, ...],
        target_names: tuple[str, ...],
        obs_layout: StateLayout,
        marker_geoms: tuple[str, ...],
        camera: CameraView,
    ) -> None:
        check_hand_order(model)
        self.name = name
        self.model = model
        self.joint_names = HAND_JOINT_NAMES
        self.keyframe = keyframe
        self.key_id = _key_id(model, keyframe)
        self.object_names = object_names
        self.target_names = target_names
        self.obs_layout = obs_layout
        self.marker_geoms = marker_geoms
        self.camera = camera
        self.object_body_ids = np.array([_body_id(model, n) for n in object_names], dtype=int)
        self.joint_qpos_adr = np.array(
            [model.jnt_qposadr[model.joint(n).id] for n in self.joint_names], dtype=int)
        self.target_mocap_ids = np.array(
            [_mocap_id(model, n) for n in target_names], dtype=int
        )
        for geom in marker_geoms:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, geom) < 0:
                raise ValueError(f"scene {name!r}: marker geom {geom!r} not in the model")
        self._index_object_coordinates()

    # ----- task hooks ---------------------------------------------------------------------
    @abc.abstractmethod
    def default_goal(self) -> np.ndarray:
        """The goal in force after a reset until ``set_goal`` is called."""

    @abc.abstractmethod
    def place_targets(self, data: mujoco.MjData, goal: np.ndarray, frame: str) -> None:
        """Move the target visuals (mocap bodies) to show ``goal`` given in ``frame`` (both
        already validated) at the hand pose of ``data.qpos``."""

    @abc.abstractmethod
    def task_observation(
        self, joint_pos: np.ndarray, objects: ObjectStates, goal: np.ndarray,
        target_pos: np.ndarray,
    ) -> np.ndarray:
        """The flat task observation in ``obs_layout`` order (``target_pos``: the target
        mocap bodies' world positions, one row each)."""

    @abc.abstractmethod
    def object_qpos_of_state(self, state: np.ndarray) -> np.ndarray:
        """The objects' qpos coordinates (``object_qpos_names``) that a task state in
        ``obs_layout`` describes; enough kinematics to draw a recorded state."""

    @abc.abstractmethod
    def object_qvel_of_state(self, state: np.ndarray) -> np.ndarray:
        """The objects' qvel coordinates (``object_qvel_names``) that a task state describes;
        what it does not hold (a ball's spin) is 0."""

    # ----- shared behaviour ---------------------------------------------------------------
    def check_goal(self, goal: np.ndarray) -> np.ndarray:
        """A float64 copy of ``goal`` in ``goal_shape``; ValueError on bad shape or values."""
        arr = np.asarray(goal, dtype=np.float64)
        if arr.size != int(np.prod(self.goal_shape)):
            raise ValueError(
                f"scene {self.name!r} goal must have shape {self.goal_shape} ({self.goal_doc}),"
                f" got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"scene {self.name!r} goal has non-finite values: {arr}")
        return arr.reshape(self.goal_shape).copy()

    def check_goal_frame(self, frame: str) -> str:
        """``frame`` if this scene takes goals in it (empty: the default frame)."""
        if not frame:
            return self.goal_frames[0]
        if frame not in self.goal_frames:
            raise ValueError(f"scene {self.name!r} takes goals in frames {list(self.goal_frames)}"
                             f", not {frame!r}")
        return frame

    @property
    def keyframe_qpos(self) -> np.ndarray:
        return self.model.key_qpos[self.key_id].copy()

    @property
    def keyframe_ctrl(self) -> np.ndarray:
        return self.model.key_ctrl[self.key_id].copy()

    @property
    def ctrl_range(self) -> np.ndarray:
        """(24, 2) joint position command limits in radians (actuator ctrlrange)."""
        return self.model.actuator_ctrlrange.copy()

    def action_map(self) -> ActionMap:
        """PDDM's action scaling for this task, centred on the keyframe hand pose."""
        return ActionMap(self.keyframe_qpos[: self.model.nu], self.ctrl_range, self.action_scale)

    def describe(self) -> dict:
        """Plain-data summary (names, sizes, layout) for logs, parameters and messages."""
        return {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "object_names": list(self.object_names),
            "target_names": list(self.target_names),
            "obs_layout": self.obs_layout.to_dict(),
            "obs_size": self.obs_layout.dim,
            "goal_shape": list(self.goal_shape),
            "goal_frames": list(self.goal_frames),
            "goal": self.goal_doc,
            "keyframe": self.keyframe,
            "action_scale": self.action_scale,
            "timestep": float(self.model.opt.timestep),
            "ctrl_range": self.ctrl_range.tolist(),
        }

    def _index_object_coordinates(self) -> None:
        """Collect the objects' qpos/qvel addresses and what kind each coordinate is."""
        m = self.model
        qadr: list[int] = []
        vadr: list[int] = []
        qkind: list[str] = []
        vkind: list[str] = []
        qnames: list[str] = []
        vnames: list[str] = []
        for obj, bid in zip(self.object_names, self.object_body_ids, strict=True):
            first, count = int(m.body_jntadr[bid]), int(m.body_jntnum[bid])
            if count == 0:
                raise ValueError(f"object {obj!r} has no joints: it cannot move")
            for j in range(first, first + count):
                jname = m.joint(j).name or obj
                q0, v0 = int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j])
                jtype = int(m.jnt_type[j])
                if jtype == int(mujoco.mjtJoint.mjJNT_FREE):
                    qadr += range(q0, q0 + 7)
                    vadr += range(v0, v0 + 6)
                    qkind += [COORD_POS] * 3 + [COORD_QUAT] * 4
                    vkind += [VEL_LIN] * 3 + [VEL_ANG] * 3
                    qnames += [f"{jname}_{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
                    vnames += [f"{jname}_{c}" for c in ("vx", "vy", "vz", "wx", "wy", "wz")]
                elif jtype in (int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE)):
                    slide = jtype == int(mujoco.mjtJoint.mjJNT_SLIDE)
                    qadr.append(q0)
                    vadr.append(v0)
                    qkind.append(COORD_POS if slide else COORD_ROT)
                    vkind.append(VEL_LIN if slide else VEL_ANG)
                    qnames.append(jname)
                    vnames.append(jname)
                else:
                    raise ValueError(f"object {obj!r}: ball joints are not supported")
        self.object_qpos_adr = np.array(qadr, dtype=int)
        self.object_dof_adr = np.array(vadr, dtype=int)
        self.object_qpos_kind = tuple(qkind)
        self.object_qvel_kind = tuple(vkind)
        self.object_qpos_names = tuple(qnames)
        self.object_qvel_names = tuple(vnames)


def _key_id(model: mujoco.MjModel, name: str) -> int:
    kid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, name)
    if kid < 0:
        raise ValueError(f"keyframe {name!r} not in the model")
    return kid


def _body_id(model: mujoco.MjModel, name: str) -> int:
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
    if bid < 0:
        raise ValueError(f"body {name!r} not in the model")
    return bid


def _mocap_id(model: mujoco.MjModel, name: str) -> int:
    mid = int(model.body_mocapid[_body_id(model, name)])
    if mid < 0:
        raise ValueError(f"target body {name!r} must be a mocap body")
    return mid
