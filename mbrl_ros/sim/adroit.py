"""The ShadowHand as PDDM simulated it, built at run time from gymnasium-robotics' Adroit hand.

gymnasium-robotics installs the Adroit hand (the 24-joint, 24-position-actuator ShadowHand
model PDDM used) under ``gymnasium_robotics/envs/assets/adroit_hand/``. We load its pen
scene with ``mujoco.MjSpec.from_file`` (meshes and textures resolve relative to that file,
so nothing is copied into this repository), strip the pen task, mount the forearm where
PDDM's wrist sits, and apply PDDM's physics settings. Task scenes add objects on top.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

#: The 24 actuated hand joints, in actuator order (PDDM's observation and action order).
HAND_JOINT_NAMES: tuple[str, ...] = (
    "WRJ1", "WRJ0",
    "FFJ3", "FFJ2", "FFJ1", "FFJ0",
    "MFJ3", "MFJ2", "MFJ1", "MFJ0",
    "RFJ3", "RFJ2", "RFJ1", "RFJ0",
    "LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0",
    "THJ4", "THJ3", "THJ2", "THJ1", "THJ0",
)  # fmt: skip

#: PDDM's position-actuator control ranges (joint_position_actuation.xml), same order.
PDDM_CTRL_RANGE: np.ndarray = np.array(
    [
        [-0.52, 0.17], [-0.79, 0.61],
        [-0.44, 0.44], [0.0, 1.6], [0.0, 1.6], [0.0, 1.6],
        [-0.44, 0.44], [0.0, 1.6], [0.0, 1.6], [0.0, 1.6],
        [-0.44, 0.44], [0.0, 1.6], [0.0, 1.6], [0.0, 1.6],
        [0.0, 0.7], [-0.44, 0.44], [0.0, 1.6], [0.0, 1.6], [0.0, 1.6],
        [-1.0, 1.0], [0.0, 1.3], [-0.26, 0.26], [-0.52, 0.52], [-1.571, 0.0],
    ]
)  # fmt: skip

#: PDDM's position gains: kp 5 on the two wrist joints, 1 on the fingers.
PDDM_KP: np.ndarray = np.array([5.0, 5.0] + [1.0] * 22)

#: Geom friction of PDDM's "Adroit" default class (sliding, torsional, rolling).
PDDM_HAND_FRICTION: tuple[float, float, float] = (1.0, 0.005, 0.001)

#: MuJoCo's built-in geom friction, which PDDM's balls and floor use (no class of their own).
MUJOCO_DEFAULT_FRICTION: tuple[float, float, float] = (1.0, 0.005, 0.0001)

#: Where the wrist joint sits in the world in PDDM's scenes: hand mount (0, -0.4, 0.2),
#: rotated -90 deg about x, forearm offset 0.01, wrist 0.256 up the forearm.
PDDM_WRIST_POS: tuple[float, float, float] = (0.0, -0.144, 0.19)

# Distance from Adroit's forearm body origin to its wrist body along the forearm axis.
_ADROIT_FOREARM_TO_WRIST = 0.396
# Pen-task elements of adroit_pen.xml that our scenes do not use.
_PEN_TASK_BODIES = ("Object", "target", "table", "vive_tracker")
_PEN_TASK_SITES = ("eps_ball",)


@dataclass(frozen=True)
class HandPhysics:
    """PDDM physics settings applied to the Adroit hand (defaults reproduce PDDM).

    timestep: physics step in seconds (PDDM 0.0025).
    noslip_iterations: Adroit ships 20; PDDM's assets set none (0).
    pddm_gains: wrist kp 5 and PDDM's control ranges (Adroit uses kp 10 on the wrist).
    pddm_friction: PDDM's hand friction (1, 0.005, 0.001); Adroit's torsional/rolling
        friction (0.5, 0.01) is 100x/10x larger and makes balls stick instead of roll.
    """

    timestep: float = 0.0025
    noslip_iterations: int = 0
    pddm_gains: bool = True
    pddm_friction: bool = True

    def __post_init__(self) -> None:
        if not (np.isfinite(self.timestep) and 0.0 < self.timestep <= 0.05):
            raise ValueError(f"timestep must be in (0, 0.05] s, got {self.timestep}")
        if self.noslip_iterations < 0:
            raise ValueError(f"noslip_iterations must be >= 0, got {self.noslip_iterations}")


def adroit_asset_dir() -> Path:
    """Directory of the Adroit hand XML shipped by gymnasium-robotics (not imported: its
    import prints warnings and pulls in gymnasium)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "gymnasium-robotics is not installed; it provides the Adroit hand model "
            "(pip install gymnasium-robotics)"
        )
    path = Path(spec.origin).parent / "envs" / "assets" / "adroit_hand"
    if not (path / "adroit_pen.xml").is_file():
        raise FileNotFoundError(f"Adroit hand model not found at {path}")
    return path


def load_pddm_hand(physics: HandPhysics | None = None) -> mujoco.MjSpec:
    """An editable spec of the bare hand (ground plane, light, no task objects) set up like
    PDDM's ShadowHand: wrist at ``PDDM_WRIST_POS``, PDDM timestep, gains, friction."""
    physics = physics or HandPhysics()
    spec = mujoco.MjSpec.from_file(str(adroit_asset_dir() / "adroit_pen.xml"))
    for name in _PEN_TASK_BODIES:
        spec.delete(spec.body(name))
    for name in _PEN_TASK_SITES:
        spec.delete(spec.site(name))
    ground = spec.geom("ground")
    ground.pos = (0.0, 0.0, 0.0)
    ground.conaffinity = 1
    # The forearm points along world +y (euler -90 deg about x): shift it so the wrist lands
    # on PDDM's wrist position.
    wx, wy, wz = PDDM_WRIST_POS
    spec.body("forearm").pos = (wx, wy - _ADROIT_FOREARM_TO_WRIST, wz)
    spec.option.timestep = physics.timestep
    spec.option.noslip_iterations = physics.noslip_iterations
    if physics.pddm_gains:
        for i, joint in enumerate(HAND_JOINT_NAMES):
            act = spec.actuator(f"A_{joint}")
            act.gainprm[0] = PDDM_KP[i]
            act.biasprm[1] = -PDDM_KP[i]
            act.ctrlrange = tuple(PDDM_CTRL_RANGE[i])
    if physics.pddm_friction:
        for geom in spec.geoms:
            geom.friction = PDDM_HAND_FRICTION
        ground.friction = MUJOCO_DEFAULT_FRICTION
    return spec


def check_hand_order(model: mujoco.MjModel) -> None:
    """Raise if the model's first 24 actuators / joints are not the hand in PDDM order."""
    if model.nu != len(HAND_JOINT_NAMES):
        raise ValueError(f"expected {len(HAND_JOINT_NAMES)} actuators, model has {model.nu}")
    for i, joint in enumerate(HAND_JOINT_NAMES):
        jid = int(model.actuator_trnid[i, 0])
        if model.joint(jid).name != joint or model.joint(joint).qposadr[0] != i:
            raise ValueError(f"actuator {i} must drive joint {joint} stored at qpos[{i}]")
