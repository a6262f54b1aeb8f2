"""PDDM's Baoding scene: the hand holding two balls that should circle each other in the palm.

Facts carried over from PDDM (shadowhand_baoding_2.xml, baoding_env.py): balls of radius
0.028 m, mass 0.043 kg, condim 4, colours yellow / pink; PDDM's keyframe; a 40-D task
observation (24 joint angles, ball 1 position and velocity, ball 2 position and velocity,
target 1 xy, target 2 xy) with the targets in world xy.

Goals: ``set_goal`` takes the two target positions in world xy, shape (2, 2); the core
library owns the schedule (``BAODING_TARGET_ELLIPSE`` is its reference geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from mbrl_ros.sim.adroit import MUJOCO_DEFAULT_FRICTION, HandPhysics, load_pddm_hand
from mbrl_ros.sim.layout import ObsLayout
from mbrl_ros.sim.registry import register_scene
from mbrl_ros.sim.scene import CameraView, ObjectStates, Scene

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


@dataclass(frozen=True)
class TargetEllipse:
    """Two targets moving on one ellipse in world xy, half a turn apart.

    Target i at control step t sits at angle ``start_angles[i] + direction * 2 pi t /
    period_steps`` on ``centre + (rx cos a, ry sin a)``. ``z_visual`` is only where the
    target markers are drawn. Angles in radians, lengths in metres.
    """

    centre_xy: tuple[float, float]
    radii_xy: tuple[float, float]
    start_angles: tuple[float, float]
    period_steps: int = 60
    direction: int = 1  # +1 counter-clockwise seen from above (PDDM's BAODING_CCW)
    z_visual: float = 0.20

    def angles_at(self, step: int | np.ndarray) -> np.ndarray:
        """Target angles, shape (..., 2)."""
        phase = self.direction * 2.0 * math.pi * np.asarray(step, dtype=np.float64)
        phase = phase / self.period_steps
        return phase[..., None] + np.asarray(self.start_angles)

    def targets_at(self, step: int | np.ndarray) -> np.ndarray:
        """Target xy positions, shape (..., 2 targets, 2 coordinates)."""
        ang = self.angles_at(step)
        cx, cy = self.centre_xy
        rx, ry = self.radii_xy
        return np.stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang)], axis=-1)


#: PDDM's ellipse as written in baoding_env.py: in the palm body's frame, (x, z) =
#: centre + (0.02 cos a, 0.036 sin a) with centre (0.005, 0.055), the target sites lifted
#: to palm y = -0.07 (off the palm surface), start angles 3pi/4 (ball 1) and -pi/4 (ball 2).
PDDM_PALM_ELLIPSE = {
    "centre_xz": (0.005, 0.055),
    "radii_xz": (0.02, 0.02 * 1.5 * 1.2),
    "palm_y": -0.07,
    "start_angles": (3.0 * math.pi / 4.0, -math.pi / 4.0),
    "period_steps": 60,
}

#: PDDM's palm-frame ellipse carried into world xy at the keyframe palm pose of this scene
#: (``palm_ellipse_in_world`` on the keyframe; the palm's x axis maps to world x and its
#: finger axis to world y, foreshortened by the 22.8 deg wrist pitch: 0.036 -> 0.0332).
#: This is where PDDM's reward would put the targets; it lies about 6.8 cm behind (-y)
#: the spot where the balls come to rest in this model, see ``BAODING_TARGET_ELLIPSE``.
PDDM_ELLIPSE_IN_WORLD = TargetEllipse(
    centre_xy=(0.0064, -0.0323),
    radii_xy=(0.0200, 0.0332),
    start_angles=(3.0 * math.pi / 4.0, -math.pi / 4.0),
)

#: The Baoding target ellipse in world xy used by this stack (the core's goal schedule).
#: Derivation (test/test_sim_baoding_geometry.py re-checks every number):
#: - radii: PDDM's palm-frame radii projected to world at the keyframe palm pose,
#:   x 0.02 -> 0.0200, y 0.036 -> 0.0332 (see ``PDDM_ELLIPSE_IN_WORLD``);
#: - centre: midway between where the two balls come to rest from the keyframe at zero
#:   action with the default ``SimConfig`` (PDDM's +-3 rad/s command limit): ball 1 at
#:   (-0.0305, 0.0329), ball 2 at (0.0404, 0.0381), z 0.156, settled after about 2 s
#:   (after 0.1 s they are at y 0.009 / 0.018, after 0.3 s at y 0.023 / 0.024), giving
#:   (0.0050, 0.0355). PDDM's projected centre (0.0064, -0.0323) is 6.8 cm short of it: the
#:   balls roll forward onto the curled fingers in this model;
#: - start angles: the balls rest side by side along x, so the angles putting each target
#:   closest to its ball (half a turn apart, as in PDDM) are pi (ball 1, left) and 0
#:   (ball 2, right); the targets then sit 1.6 cm inside each resting ball (x radius 0.02
#:   vs. the balls' 0.0355 half-spacing), the closest this ellipse allows. PDDM's 3pi/4
#:   and -pi/4 would start 3.4 cm off here;
#: - period 60 steps, counter-clockwise seen from above, as PDDM's schedule.
BAODING_TARGET_ELLIPSE = TargetEllipse(
    centre_xy=(0.0050, 0.0355),
    radii_xy=(0.0200, 0.0332),
    start_angles=(math.pi, 0.0),
)


def palm_ellipse_in_world(model: mujoco.MjModel, data: mujoco.MjData) -> TargetEllipse:
    """Project PDDM's palm-frame target ellipse into world xy at the current palm pose.

    Uses ``data.xpos/xmat`` (call ``mj_forward`` first). The palm's axes are nearly aligned
    with the world's, so the projection is an axis-aligned ellipse to within 0.5 mm.
    """
    palm = data.body("palm")
    rot = palm.xmat.reshape(3, 3)
    cx, cz = PDDM_PALM_ELLIPSE["centre_xz"]
    rx, rz = PDDM_PALM_ELLIPSE["radii_xz"]
    centre = palm.xpos + rot @ np.array([cx, PDDM_PALM_ELLIPSE["palm_y"], cz])
    u = rot @ np.array([rx, 0.0, 0.0])
    v = rot @ np.array([0.0, 0.0, rz])
    return TargetEllipse(
        centre_xy=(float(centre[0]), float(centre[1])),
        radii_xy=(float(np.hypot(u[0], u[1])), float(np.hypot(v[0], v[1]))),
        start_angles=PDDM_PALM_ELLIPSE["start_angles"],
        period_steps=PDDM_PALM_ELLIPSE["period_steps"],
    )


BAODING_LAYOUT = ObsLayout(
    [
        ("joint_pos", 24),
        ("ball1_pos", 3),
        ("ball1_vel", 3),
        ("ball2_pos", 3),
        ("ball2_vel", 3),
        ("target1_xy", 2),
        ("target2_xy", 2),
    ]
)


class BaodingScene(Scene):
    """Two balls in the palm; the goal is one world-xy target per ball."""

    goal_shape = (2, 2)
    goal_doc = "world xy of target 1 and target 2, metres: [[x1, y1], [x2, y2]]"
    action_scale = 0.9

    def __init__(self, model: mujoco.MjModel, ellipse: TargetEllipse) -> None:
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
        self.ellipse = ellipse

    def default_goal(self) -> np.ndarray:
        return self.ellipse.targets_at(0)

    def place_targets(self, data: mujoco.MjData, goal: np.ndarray) -> None:
        for i, mocap in enumerate(self.target_mocap_ids):
            data.mocap_pos[mocap] = (goal[i, 0], goal[i, 1], self.ellipse.z_visual)

    def task_observation(
        self, joint_pos: np.ndarray, objects: ObjectStates, goal: np.ndarray
    ) -> np.ndarray:
        return np.concatenate(
            [
                joint_pos,
                objects.pos[0],
                objects.linvel[0],
                objects.pos[1],
                objects.linvel[1],
                goal[0],
                goal[1],
            ]
        )


def build_baoding(
    physics: HandPhysics | None = None, ellipse: TargetEllipse = BAODING_TARGET_ELLIPSE
) -> BaodingScene:
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
    start_xy = ellipse.targets_at(0)
    for i, name in enumerate(("target1", "target2")):
        body = spec.worldbody.add_body(
            name=name, mocap=True, pos=(*start_xy[i], ellipse.z_visual)
        )
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
    mpos = np.array([(*start_xy[i], ellipse.z_visual) for i in range(2)])
    spec.add_key(name="pddm_init", qpos=key.tolist(), ctrl=ctrl.tolist(),
                 mpos=mpos.ravel().tolist(), mquat=[1.0, 0, 0, 0] * 2)
    return BaodingScene(spec.compile(), ellipse)


register_scene("baoding", build_baoding)
