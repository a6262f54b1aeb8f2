"""PDDM's Baoding scene: the hand holding two balls that should circle each other in the palm.

Facts carried over from PDDM (shadowhand_baoding_2.xml, baoding_env.py): balls of radius
0.028 m, mass 0.043 kg, condim 4, colours yellow / pink; PDDM's keyframe; a 40-D task
observation (24 joint angles, ball 1 position and velocity, ball 2 position and velocity,
target 1 xy, target 2 xy) with the targets in world xy.

Goals: ``set_goal`` takes the two target points, shape (2, 3), in the palm frame (PDDM's
target sites on the palm) or the world frame; the core task owns the schedule.
"""

from __future__ import annotations

import mujoco
import numpy as np

from mbrl_ros.core.tasks.layouts import BAODING_LAYOUT
from mbrl_ros.sim.adroit import MUJOCO_DEFAULT_FRICTION, HandPhysics, load_pddm_hand
from mbrl_ros.sim.registry import register_scene
from mbrl_ros.sim.scene import CameraView, ObjectStates, Scene, _body_id

#: PDDM's Baoding keyframe: 24 hand joints, then ball 1 and ball 2 free joints (pos, quat).
PDDM_BAODING_KEY: np.ndarray = np.array(
    [
        0.0126, -0.398, 0.379, 0.0564, 1.167, 0.0407, 0.265, -0.136, 1.144, 0.045, 0.074,
        0.139, 1.112, 0.234, -0.022, -0.368, -0.000, 1.25, 0.152, -0.021, 0.374, 0.0939,
        -0.126, -0.536,
        -0.029, -0.001, 0.19, 1, 0, 0, 0,
        0.03, 0.01, 0.19, 1, 0, 0, 0,
    ]
)  # fmt: skip

BALL_RADIUS = 0.028
BALL_MASS = 0.043
BALL_RGBA = ((1.0, 0.8, 0.31, 1.0), (0.84, 0.59, 0.53, 1.0))
TARGET_RADIUS = 0.007


#: PDDM's step-0 Baoding targets in the palm frame (m): on the ellipse centred at palm
#: (x, z) = (0.005, 0.055) with radii (0.02, 0.036), at palm y = -0.07, angles 3pi/4 and
#: -pi/4. Shown until a goal arrives; the core task's schedule starts here too (tested).
PDDM_START_TARGETS_PALM: np.ndarray = np.array(
    [[0.005 + 0.02 * np.cos(a), -0.07, 0.055 + 0.036 * np.sin(a)]
     for a in (3.0 * np.pi / 4.0, -np.pi / 4.0)])


class BaodingScene(Scene):
    """Two balls in the palm; the goal is one 3-D target point per ball.

    Goal frames: ``palm`` (PDDM: the points are fixed in the palm body's frame and move with
    the wrist) or ``world``. The target markers are mocap bodies placed at the points' world
    positions whenever the simulator reads its sensors; the task observation carries their
    world xy, as PDDM's observation carried its target sites'.
    """

    goal_shape = (2, 3)
    goal_doc = "target 1 and target 2 as 3-D points in the goal frame, metres: [[x, y, z], ...]"
    goal_frames = ("palm", "world")
    action_scale = 0.9

    def __init__(self, model: mujoco.MjModel) -> None:
        super().__init__(
            "baoding",
            model,
            keyframe="pddm_init",
            object_names=("ball1", "ball2"),
            target_names=("target1", "target2"),
            obs_layout=BAODING_LAYOUT,
            marker_geoms=("ball1", "ball2", "target1", "target2"),
            camera=CameraView(lookat=(0.005, -0.01, 0.16), distance=0.32, azimuth=75.0,
                              elevation=-55.0),
        )
        self.palm_body_id = _body_id(model, "palm")

    def default_goal(self) -> np.ndarray:
        return PDDM_START_TARGETS_PALM.copy()

    def place_targets(self, data: mujoco.MjData, goal: np.ndarray, frame: str) -> None:
        points = goal
        if frame == "palm":
            mujoco.mj_kinematics(self.model, data)  # the palm pose of the current qpos
            rot = data.xmat[self.palm_body_id].reshape(3, 3)
            points = data.xpos[self.palm_body_id] + goal @ rot.T
        for i, mocap in enumerate(self.target_mocap_ids):
            data.mocap_pos[mocap] = points[i]

    def task_observation(
        self, joint_pos: np.ndarray, objects: ObjectStates, goal: np.ndarray,
        target_pos: np.ndarray,
    ) -> np.ndarray:
        return np.concatenate(
            [
                joint_pos,
                objects.pos[0],
                objects.linvel[0],
                objects.pos[1],
                objects.linvel[1],
                target_pos[0, :2],
                target_pos[1, :2],
            ]
        )


    def object_qpos_of_state(self, state: np.ndarray) -> np.ndarray:
        # the state has no ball orientation; a sphere looks the same at any
        identity = np.array([1.0, 0.0, 0.0, 0.0])
        lay = self.obs_layout
        return np.concatenate([state[lay["ball1_pos"]], identity, state[lay["ball2_pos"]],
                               identity])

    def object_qvel_of_state(self, state: np.ndarray) -> np.ndarray:
        lay, spin = self.obs_layout, np.zeros(3)  # the state has no ball spin
        return np.concatenate([state[lay["ball1_vel"]], spin, state[lay["ball2_vel"]], spin])


def build_baoding(physics: HandPhysics | None = None) -> BaodingScene:
    """Compile the Baoding scene (about 0.1 s)."""
    spec = load_pddm_hand(physics)
    key = PDDM_BAODING_KEY
    for i, name in enumerate(("ball1", "ball2")):
        rgba = BALL_RGBA[i]
        spec.add_material(name=f"mat_{name}", rgba=rgba, specular=0.1, shininess=0.1,
                          reflectance=0.1)
        start = 24 + 7 * i
        body = spec.worldbody.add_body(name=name, pos=tuple(key[start:start + 3]))
        body.add_freejoint(name=name)
        body.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=(BALL_RADIUS, 0.0, 0.0),
            mass=BALL_MASS,
            condim=4,
            friction=MUJOCO_DEFAULT_FRICTION,
            margin=0.0,
            material=f"mat_{name}",
            rgba=rgba,
        )
    for i, name in enumerate(("target1", "target2")):
        body = spec.worldbody.add_body(name=name, mocap=True)
        body.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=(TARGET_RADIUS, 0.0, 0.0),
            contype=0,
            conaffinity=0,
            rgba=BALL_RGBA[i],
        )
    model = spec.compile()
    ctrl = np.clip(key[: model.nu], *model.actuator_ctrlrange.T)
    spec.add_key(name="pddm_init", qpos=key.tolist(), ctrl=ctrl.tolist())
    return BaodingScene(spec.compile())


register_scene("baoding", build_baoding)
