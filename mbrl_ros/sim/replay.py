"""Pictures of a recorded episode: put task states back into the scene and render them.

The experiment manager only has what went over ROS (task states: joint angles, object
positions/angles, goals), not MuJoCo's full state; kinematics is enough for a picture.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from mbrl_ros.sim.registry import build_scene
from mbrl_ros.sim.render import SceneRenderer, write_video


def replay_frames(task: str, states: np.ndarray, goals: np.ndarray | None = None,
                  every: int = 1, size: tuple[int, int] = (320, 240),
                  goal_frame: str = "") -> list[np.ndarray]:
    """Frames of task states ``[T, S]`` (with goals ``[T, G]`` in ``goal_frame`` shown as
    targets; empty: the scene's default frame)."""
    states = np.asarray(states, dtype=np.float64)
    scene = build_scene(task)
    if states.ndim != 2 or states.shape[1] != scene.obs_layout.dim:
        raise ValueError(f"states must be [T, {scene.obs_layout.dim}], got {states.shape}")
    joints = scene.obs_layout["joints"]
    data = mujoco.MjData(scene.model)
    mujoco.mj_resetDataKeyframe(scene.model, data, scene.key_id)
    frames = []
    with SceneRenderer(scene, *size) as renderer:
        for t in range(0, len(states), max(1, every)):
            data.qpos[scene.joint_qpos_adr] = states[t, joints]
            data.qpos[scene.object_qpos_adr] = scene.object_qpos_of_state(states[t])
            if goals is not None:
                scene.place_targets(data, scene.check_goal(
                    np.asarray(goals[t], dtype=np.float64).reshape(scene.goal_shape)),
                    scene.check_goal_frame(goal_frame))
            frames.append(renderer.render(data))
    return frames


def save_rollout(path: str | Path, task: str, states: np.ndarray,
                 goals: np.ndarray | None = None, frames: int = 10,
                 size: tuple[int, int] = (320, 240), goal_frame: str = "") -> Path:
    """Render about ``frames`` evenly spaced states to MP4 (or a PNG strip without ffmpeg)."""
    every = max(1, -(-len(states) // frames))
    images = replay_frames(task, states, goals, every=every, size=size, goal_frame=goal_frame)
    return write_video(path, images, fps=max(1.0, 10.0 / every), columns=min(5, len(images)))

