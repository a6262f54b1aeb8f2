"""The ``shadow_hand_sim`` node's parameters: schema, the joint-order check, and the
simulator settings they describe (:func:`sim_config`).
"""

from __future__ import annotations

from typing import Any

from mbrl_ros.nodes.parameters import Param
from mbrl_ros.sim import HAND_JOINT_NAMES, SCENES, RealismConfig, SimConfig

REALISM = [
    Param("realism.joint_pos_noise_std", 0.0, "joint encoder noise std (rad)", 0.0, 1.0,
          read_only=True),
    Param("realism.joint_vel_noise_std", 0.0, "joint velocity noise std (rad/s)", 0.0, 10.0,
          read_only=True),
    Param("realism.object_pos_noise_std", 0.0, "tracker position noise std (m)", 0.0, 1.0,
          read_only=True),
    Param("realism.object_rot_noise_std", 0.0, "tracker orientation noise std (rad)", 0.0, 3.2,
          read_only=True),
    Param("realism.object_vel_noise_std", 0.0, "tracker linear velocity noise std (m/s)",
          0.0, 10.0, read_only=True),
    Param("realism.object_angvel_noise_std", 0.0, "tracker angular velocity noise (rad/s)",
          0.0, 100.0, read_only=True),
    Param("realism.tracker_latency_steps", 0, "tracker reports objects this many steps late",
          0, 100, read_only=True),
    Param("realism.tracker_dropout_rate", 0.0, "probability a tracker reading is missing",
          0.0, 0.99, read_only=True),
    Param("realism.action_delay_steps", 0, "commands take effect this many steps late",
          0, 100, read_only=True),
]
PARAMS = [
    Param("task", "baoding", "scene to simulate", choices=tuple(SCENES), read_only=True),
    Param("mode", "lockstep", "realtime: step on the wall clock; lockstep: one step per "
          "command, publishing /clock", choices=("realtime", "lockstep"), read_only=True),
    Param("joints", list(HAND_JOINT_NAMES), "joint order of joint_commands and joint_states",
          read_only=True),
    Param("command_velocity_limit", 3.0, "each applied target stays within this speed "
          "(rad/s) times the control step of the current joint position, as PDDM's robot "
          "interface (0 = off)", 0.0, 100.0, read_only=True),
    Param("frame_skip", 40, "physics steps (0.0025 s) per control step", 1, 1000,
          read_only=True),
    Param("seed", 0, "seed of the first episode (reset requests bring their own)", 0,
          2**31 - 1),
    Param("out_of_limit", "clamp", "commands outside the joint limits: clamp or reject",
          choices=("clamp", "reject")),
    Param("frame_id", "world", "frame of poses and markers", read_only=True),
    Param("marker_rate_hz", 2.0, "scene MarkerArray rate (0 = off)", 0.0, 30.0),
    Param("lockstep_republish_s", 2.0, "lockstep: wall seconds without a command before the "
          "current state is published again (a lost message cannot stall the loop)", 0.05, 60.0),
    Param("tracker_reports_velocity", False, "object_states carry twists (a mocap tracker "
          "usually measures poses only; the estimator then estimates velocities)"),
    *REALISM,
]


def _joints_check(values: dict[str, Any]) -> str | None:
    joints = values["joints"]
    if sorted(joints) != sorted(HAND_JOINT_NAMES):
        return f"joints must be a permutation of the hand's 24 joints, got {joints}"
    return None


def sim_config(values: dict[str, Any]) -> SimConfig:
    """The simulator settings the parameters describe (physics steps, realism, seed, command
    velocity limit; 0 turns the limit off)."""
    realism = RealismConfig(**{k.split(".", 1)[1]: values[k] for k in values
                               if k.startswith("realism.")})
    return SimConfig(frame_skip=values["frame_skip"], realism=realism, seed=values["seed"],
                     command_velocity_limit=values["command_velocity_limit"] or None)


PARAM_CHECKS = [_joints_check]
