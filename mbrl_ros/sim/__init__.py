"""MuJoCo-only simulated ShadowHand (PDDM's Baoding and cube scenes); numpy + mujoco, no ROS.

Main entry points: ``HandSim`` (reset / set_goal / set_joint_targets / step / geometry),
the scene registry (``SCENES``, ``register_scene``, ``build_scene``), PDDM's
``ActionMap``, ``RealismConfig``, for pictures ``mbrl_ros.sim.render``, and ``HandEnv``
(the gymnasium environment, imported on first use: it pulls in gymnasium and torch).
"""

from mbrl_ros.sim.gl_backend import select_gl_backend

select_gl_backend()  # must precede the first ``import mujoco`` of the process

# ruff: noqa: E402  (the imports below must come after the backend choice)
from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.sim import scene_baoding as _scene_baoding  # registers "baoding"
from mbrl_ros.sim import scene_cube as _scene_cube  # registers "cube"
from mbrl_ros.sim.adroit import HAND_JOINT_NAMES, HandPhysics, adroit_asset_dir
from mbrl_ros.sim.geometry import GeomPrimitive, scene_primitives
from mbrl_ros.sim.guard import route_mujoco_warnings
from mbrl_ros.sim.observation import Observation, StepResult
from mbrl_ros.sim.realism import RealismConfig
from mbrl_ros.sim.registry import SCENES, build_scene, register_scene
from mbrl_ros.sim.scene import CameraView, ObjectStates, Scene
from mbrl_ros.sim.scene_baoding import BaodingScene, build_baoding
from mbrl_ros.sim.scene_cube import CubeScene, build_cube
from mbrl_ros.sim.simulator import HandSim, SimConfig, SimState

__all__ = [
    "HAND_JOINT_NAMES",
    "SCENES",
    "ActionMap",
    "BaodingScene",
    "CameraView",
    "CubeScene",
    "GeomPrimitive",
    "HandEnv",
    "HandPhysics",
    "HandSim",
    "ObjectStates",
    "Observation",
    "RealismConfig",
    "Scene",
    "SimConfig",
    "SimState",
    "StepResult",
    "adroit_asset_dir",
    "build_baoding",
    "build_cube",
    "build_scene",
    "register_scene",
    "route_mujoco_warnings",
    "scene_primitives",
    "select_gl_backend",
]

del _scene_baoding, _scene_cube


def __getattr__(name: str) -> object:
    if name == "HandEnv":  # lazily: gymnasium and torch are heavy and the node needs neither
        from mbrl_ros.sim.gym_env import HandEnv

        return HandEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
