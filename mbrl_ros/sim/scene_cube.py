"""PDDM's cube-reorientation scene: a 5.7 cm die held in the hand, turned to a goal orientation.

Facts carried over from PDDM (shadowhand_hand_cube.xml, object_dice.xml, cube_env.py): the
die is three overlapping boxes plus twelve edge capsules (rounded edges), 0.05 kg with
diagonal inertia 6.48e-5, spawned at (0, -0.02, 0.24) on three slide and three hinge joints
(OBJTx/y/z, OBJRx/y/z, damping 0.001); PDDM's keyframe; a 39-D task observation (24 joint
angles, cube position, its three hinge angles ("Euler angles"), linear velocity, hinge
rates, desired hinge angles); full-range action scaling (factor 1.0 instead of 0.9).

Goals: ``set_goal`` takes the desired hinge angles (rx, ry, rz) in radians (PDDM: one of
left / right / up / down, +-1.5 rad about z or x). A translucent mocap die at
(0, 0.2, 0.25) shows it.
"""

from __future__ import annotations

import mujoco
import numpy as np

from mbrl_ros.core.hinge_angles import quat_from_euler_xyz
from mbrl_ros.core.tasks.layouts import CUBE_LAYOUT
from mbrl_ros.sim.adroit import MUJOCO_DEFAULT_FRICTION, HandPhysics, load_pddm_hand
from mbrl_ros.sim.registry import register_scene
from mbrl_ros.sim.scene import CameraView, ObjectStates, Scene

#: PDDM's cube keyframe: 24 hand joints, then the cube's 6 joints (its 3 target joints are
#: a mocap body here). THJ2 -0.262 and THJ1 -0.524 lie just outside their control ranges;
#: the keyframe control is clamped into range.
PDDM_CUBE_KEY: np.ndarray = np.array(
    [
        0.0, 0.0, 0.31828, 0.212085, 1.06828, 0.45559, 0.16132, 0.1571, 0.699095, 0.61269,
        -0.03052, 0.10997, 0.91118, 0.56556, 0.09074, -0.22236, 0.10997, 0.746225, 0.589125,
        -0.71196, 0.477785, -0.262, -0.524, -0.80121,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ]
)  # fmt: skip

#: World position of the cube body when its slide joints read zero. PDDM's "cube position"
#: observation is the slide displacement from here (world = spawn + displacement).
CUBE_SPAWN_POS = (0.0, -0.02, 0.24)
CUBE_HALF = 0.0286
CUBE_MASS = 0.05
CUBE_INERTIA = 6.48e-5
TARGET_POS = (0.0, 0.2, 0.25)


class CubeScene(Scene):
    """The die in the hand; the goal is its desired hinge angles."""

    goal_shape = (3,)
    goal_doc = "desired cube hinge angles (OBJRx, OBJRy, OBJRz) in radians"
    action_scale = 1.0

    def __init__(self, model: mujoco.MjModel) -> None:
        super().__init__(
            "cube",
            model,
            keyframe="pddm_init",
            object_names=("cube",),
            target_names=("target",),
            obs_layout=CUBE_LAYOUT,
            marker_geoms=("cube_core_x", "cube_core_y", "cube_core_z", "target"),
            camera=CameraView(lookat=(0.0, 0.07, 0.2), distance=0.44, azimuth=68.0,
                              elevation=-33.0),
        )

    def default_goal(self) -> np.ndarray:
        return np.zeros(3)

    def place_targets(self, data: mujoco.MjData, goal: np.ndarray, frame: str) -> None:
        data.mocap_quat[self.target_mocap_ids[0]] = quat_from_euler_xyz(goal)

    def task_observation(
        self, joint_pos: np.ndarray, objects: ObjectStates, goal: np.ndarray,
        target_pos: np.ndarray,
    ) -> np.ndarray:
        return np.concatenate(
            [joint_pos, objects.qpos[0:3], objects.qpos[3:6], objects.qvel[0:3],
             objects.qvel[3:6], goal]
        )


    def object_qpos_of_state(self, state: np.ndarray) -> np.ndarray:
        lay = self.obs_layout  # slide offsets then hinge angles, as the state holds them
        return np.concatenate([state[lay["cube_pos"]], state[lay["cube_euler"]]])

    def object_qvel_of_state(self, state: np.ndarray) -> np.ndarray:
        lay = self.obs_layout  # slide velocities then hinge rates
        return np.concatenate([state[lay["cube_linvel"]], state[lay["cube_angvel"]]])


def _add_die_material(spec: mujoco.MjSpec, name: str, alpha: float) -> None:
    mat = spec.add_material(name=name, rgba=(1.0, 1.0, 1.0, alpha), specular=0.3,
                            shininess=1.0, reflectance=0.00001)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "dice"


def build_cube(physics: HandPhysics | None = None) -> CubeScene:
    """Compile the cube scene (about 0.1 s)."""
    spec = load_pddm_hand(physics)
    spec.add_texture(name="dice", type=mujoco.mjtTexture.mjTEXTURE_CUBE, file="dice.png",
                     gridsize=[3, 4], gridlayout="..U.LFRB..D.")
    _add_die_material(spec, "mat_dice", 1.0)
    _add_die_material(spec, "mat_dice_target", 0.3)

    cube = spec.worldbody.add_body(name="cube", pos=CUBE_SPAWN_POS)
    cube.explicitinertial = True
    cube.ipos, cube.iquat = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)  # centre of mass = centre
    cube.mass = CUBE_MASS
    cube.inertia = (CUBE_INERTIA,) * 3
    contact = dict(friction=MUJOCO_DEFAULT_FRICTION, margin=0.0, condim=3)
    edge = 0.0285
    corners = [(sx, sy) for sx in (-edge, edge) for sy in (-edge, edge)]
    for axis in range(3):  # four edges parallel to each axis
        for k, (a, b) in enumerate(corners):
            start, end = np.zeros(3), np.zeros(3)
            others = [i for i in range(3) if i != axis]
            start[others], end[others] = (a, b), (a, b)
            start[axis], end[axis] = -edge, edge
            cube.add_geom(name=f"cube_edge_{'xyz'[axis]}{k}",
                          type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(0.005, 0, 0),
                          fromto=(*start, *end), rgba=(1, 1, 1, 1), **contact)
    for axis in range(3):  # three boxes, each longer along one axis
        half = [CUBE_HALF] * 3
        half[axis] = 0.0334
        cube.add_geom(name=f"cube_core_{'xyz'[axis]}", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=half, material="mat_dice", **contact)
    for name, axis in (("OBJTx", (1, 0, 0)), ("OBJTy", (0, 1, 0)), ("OBJTz", (0, 0, 1))):
        cube.add_joint(name=name, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=axis,
                       range=(-0.5, 0.5), limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                       damping=0.001, armature=0.0, frictionloss=0.0, margin=0.0)
    # Three hinges are Euler angles: at ry = +-pi/2 (gimbal lock) their mass matrix is
    # singular. A little armature (1.5% of the cube's inertia) keeps it invertible.
    for name, axis in (("OBJRx", (1, 0, 0)), ("OBJRy", (0, 1, 0)), ("OBJRz", (0, 0, 1))):
        cube.add_joint(name=name, type=mujoco.mjtJoint.mjJNT_HINGE, axis=axis,
                       limited=mujoco.mjtLimited.mjLIMITED_FALSE, damping=0.001,
                       armature=1e-6, frictionloss=0.0, margin=0.0)

    target = spec.worldbody.add_body(name="target", mocap=True, pos=TARGET_POS)
    target.add_geom(name="target", type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.026,) * 3,
                    contype=0, conaffinity=0, material="mat_dice_target")

    model = spec.compile()
    ctrl = np.clip(PDDM_CUBE_KEY[: model.nu], *model.actuator_ctrlrange.T)
    spec.add_key(name="pddm_init", qpos=PDDM_CUBE_KEY.tolist(), ctrl=ctrl.tolist(),
                 mpos=list(TARGET_POS), mquat=[1.0, 0.0, 0.0, 0.0])
    return CubeScene(spec.compile())


register_scene("cube", build_cube)
