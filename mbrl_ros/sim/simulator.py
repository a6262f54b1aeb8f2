"""``HandSim``: the simulated ShadowHand a ROS node wraps (numpy in, numpy out).

One control step holds a joint position command for ``frame_skip`` physics steps (PDDM:
40 x 0.0025 s = 0.1 s). Commands are joint targets in radians (what a real hand's
position controller takes) or normalized actions mapped with PDDM's ``ActionMap``.
A node translates messages to these calls:

    sim = HandSim("baoding", SimConfig(realism=RealismConfig(...)))
    obs = sim.reset(seed=0)                       # -> Observation
    sim.set_goal(goal, frame="palm")              # goal service / topic
    sim.set_joint_targets(q)                      # ~/commands (Float64MultiArray)
    result = sim.step()                           # timer tick or lockstep
    result.observation.joint_pos, ...objects, ...task_obs
    sim.geometry()                                # MarkerArray
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import mujoco
import numpy as np

from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.sim.geometry import GeomPrimitive, scene_primitives
from mbrl_ros.sim.guard import PhysicsGuard
from mbrl_ros.sim.observation import Observation, StepResult
from mbrl_ros.sim.realism import RealismConfig
from mbrl_ros.sim.registry import build_scene
from mbrl_ros.sim.scene import Scene
from mbrl_ros.sim.sensors import Sensors


@dataclass(frozen=True)
class SimConfig:
    """How ``HandSim`` runs a scene.

    frame_skip: physics steps per control step (PDDM 40).
    realism: sensing/actuation imperfections, all off by default.
    seed: seeds the random streams at construction; ``reset(seed=...)`` reseeds.
    reset_joint_noise_std: std (rad) of a random offset of the hand joints at reset.
    reset_object_noise_std: std (m) of a random offset of the objects' positions at reset.
    reset_on_fault: restart the episode when the physics guard trips.
    command_velocity_limit: rad/s; each control step the applied joint target is kept
        within ``limit * control_dt`` of the current joint position, as PDDM's Robot did
        (velocity bounds +-3 rad/s: at most 0.3 rad ahead per 0.1 s step). None: off.
    """

    frame_skip: int = 40
    realism: RealismConfig = field(default_factory=RealismConfig)
    seed: int = 0
    reset_joint_noise_std: float = 0.0
    reset_object_noise_std: float = 0.0
    reset_on_fault: bool = True
    command_velocity_limit: float | None = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.frame_skip, bool) or int(self.frame_skip) != self.frame_skip or (
            not 1 <= self.frame_skip <= 10_000
        ):
            raise ValueError(f"frame_skip must be an integer in [1, 10000], got {self.frame_skip}")
        if not isinstance(self.realism, RealismConfig):
            raise ValueError(f"realism must be a RealismConfig, got {type(self.realism)}")
        for name in ("reset_joint_noise_std", "reset_object_noise_std"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        limit = self.command_velocity_limit
        if limit is not None and not (np.isfinite(limit) and limit > 0):
            raise ValueError(f"command_velocity_limit must be > 0 or None, got {limit}")


@dataclass(frozen=True)
class SimState:
    """Everything needed to continue a simulation exactly (``get_state``/``set_state``),
    or, with only qpos/qvel, a start state for ``reset(initial_state=...)``."""

    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray | None = None
    qacc_warmstart: np.ndarray | None = None
    mocap_pos: np.ndarray | None = None
    mocap_quat: np.ndarray | None = None
    time: float = 0.0
    step: int = 0
    goal: np.ndarray | None = None
    goal_frame: str = ""
    command: np.ndarray | None = None
    pending: tuple[np.ndarray, ...] = ()


class HandSim:
    """A scene, its MuJoCo data, PDDM's action map, sensors and the physics guard.

    Not thread-safe: a node should call it from one callback group (e.g. a mutually
    exclusive group holding the step timer, the command subscriber and the services).
    """

    def __init__(
        self, scene: Scene | str, config: SimConfig | None = None, **scene_options: object
    ) -> None:
        if scene_options and not isinstance(scene, str):
            raise ValueError("scene_options only apply when the scene is given by name")
        self.scene = build_scene(scene, **scene_options) if isinstance(scene, str) else scene
        self.config = config or SimConfig()
        self.model = self.scene.model
        self.data = mujoco.MjData(self.model)
        self.action_map: ActionMap = self.scene.action_map()
        self._guard = PhysicsGuard()
        self._pending: deque[np.ndarray] = deque()
        self._step = 0
        self._goal = self.scene.default_goal()
        self._goal_frame = self.scene.goal_frames[0]
        self._command = self.scene.keyframe_ctrl
        self._faults = 0
        self._seed(self.config.seed)
        self.reset()

    # ----- facts for the node -------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.scene.joint_names

    @property
    def joint_limits(self) -> np.ndarray:
        """(24, 2) command limits in radians (lo, hi), joint_names order."""
        return self.scene.ctrl_range

    @property
    def control_dt(self) -> float:
        """Simulated seconds per control step."""
        return self.config.frame_skip * float(self.model.opt.timestep)

    @property
    def step_index(self) -> int:
        """Control steps since the last reset."""
        return self._step

    @property
    def time(self) -> float:
        """Simulated seconds since the last reset."""
        return float(self.data.time)

    @property
    def goal(self) -> np.ndarray:
        return self._goal.copy()

    @property
    def command(self) -> np.ndarray:
        """The joint targets (rad) currently commanded (before action delay and the
        velocity limit; ``data.ctrl`` holds what was applied in the last step)."""
        return self._command.copy()

    @property
    def fault_count(self) -> int:
        """How often the physics guard tripped since construction."""
        return self._faults

    def describe(self) -> dict:
        """Scene facts plus run settings, as plain data (parameters, logs, messages)."""
        info = self.scene.describe()
        info.update(frame_skip=self.config.frame_skip, control_dt=self.control_dt,
                    realism=self.config.realism.to_dict(), action_map=self.action_map.as_dict())
        return info

    # ----- episode control ----------------------------------------------------------------
    def reset(self, seed: int | None = None, initial_state: SimState | None = None) -> Observation:
        """Start an episode at the keyframe (or ``initial_state``) and return its first reading.

        ``seed`` reseeds every random stream (noise, dropout, reset offsets); without it the
        streams continue, so a run is reproducible from ``SimConfig.seed``. The goal returns
        to the scene default.
        """
        m, d = self.model, self.data
        command = self.action_map.mid.copy()
        if initial_state is not None:  # validate before touching anything
            self._check_shape(initial_state.qpos, m.nq, "initial_state.qpos")
            self._check_shape(initial_state.qvel, m.nv, "initial_state.qvel")
            command = self._command_from(initial_state)
        if seed is not None:
            self._seed(seed)
        mujoco.mj_resetDataKeyframe(m, d, self.scene.key_id)
        if initial_state is not None:
            d.qpos[:], d.qvel[:] = initial_state.qpos, initial_state.qvel
        else:
            self._perturb_start_state()
        self._command = command
        self._pending = deque([self._command.copy()] * self.config.realism.action_delay_steps)
        d.ctrl[:] = self._command
        self._step = 0
        self._goal = self.scene.default_goal()
        self._goal_frame = self.scene.goal_frames[0]
        self.scene.place_targets(d, self._goal, self._goal_frame)
        mujoco.mj_forward(m, d)
        fault = _nonfinite(d)
        if fault:
            raise ValueError(f"reset state is not usable: {fault}")
        self._guard.arm(d)
        self._sensors.reset(d, self._step)
        return self._measure()

    @property
    def goal_frame(self) -> str:
        return self._goal_frame

    def set_goal(self, goal: np.ndarray, frame: str = "") -> None:
        """Set the task goal (scene ``goal_shape``, e.g. (2, 3) target points for Baoding)
        in ``frame`` (one of the scene's ``goal_frames``; empty: its default) and move the
        target visuals; ValueError on a bad shape, non-finite values or an unknown frame."""
        frame = self.scene.check_goal_frame(frame)
        self._goal = self.scene.check_goal(goal)
        self._goal_frame = frame
        self.scene.place_targets(self.data, self._goal, frame)

    def set_joint_targets(self, joint_targets: np.ndarray, *, strict: bool = False) -> np.ndarray:
        """Command joint positions (rad, joint_names order) held from the next step on.

        Out-of-limit targets are clamped to ``joint_limits``, or rejected with ValueError
        if ``strict``. Returns the command as applied.
        """
        q = np.asarray(joint_targets, dtype=np.float64)
        if q.shape != (self.model.nu,):
            raise ValueError(f"joint targets must have shape ({self.model.nu},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"joint targets have non-finite values at "
                             f"{[self.joint_names[i] for i in np.flatnonzero(~np.isfinite(q))]}")
        outside = self.joints_out_of_limits(q)
        if outside and strict:
            raise ValueError(f"joint targets outside limits for {outside}")
        lo, hi = self.joint_limits.T
        self._command = np.clip(q, lo, hi)
        return self._command.copy()

    def joints_out_of_limits(self, joint_targets: np.ndarray) -> list[str]:
        """Names of joints whose target lies outside ``joint_limits``."""
        q = np.asarray(joint_targets, dtype=np.float64)
        lo, hi = self.joint_limits.T
        return [self.joint_names[i] for i in np.flatnonzero((q < lo) | (q > hi))]

    def set_action(self, action: np.ndarray) -> np.ndarray:
        """Command a normalized action in [-1, 1]^24 (PDDM scaling); returns joint targets."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.model.nu,):
            raise ValueError(f"action must have shape ({self.model.nu},), got {a.shape}")
        return self.set_joint_targets(self.action_map.to_joint_targets(a))

    def step(self, action: np.ndarray | None = None) -> StepResult:
        """Advance one control step with the held command (``action`` sets it first).

        If the physics guard trips, the result carries the reason and, with
        ``reset_on_fault``, the first observation of a fresh episode.
        """
        if action is not None:
            self.set_action(action)
        m, d = self.model, self.data
        self._pending.append(self._command.copy())
        applied = self._pending.popleft()
        if self.config.command_velocity_limit is not None:
            q = d.qpos[: m.nu]
            reach = self.config.command_velocity_limit * self.control_dt
            applied = np.clip(applied, q - reach, q + reach)
        d.ctrl[:] = applied
        self._guard.arm(d)
        for _ in range(self.config.frame_skip):
            mujoco.mj_step(m, d)
        self._step += 1
        fault = self._guard.check(d)
        if fault is not None:
            self._faults += 1
            if self.config.reset_on_fault:
                return StepResult(self.reset(), fault=fault, reset=True)
        self._sensors.record(d, self._step)
        return StepResult(self._measure(), fault=fault)

    def observe(self) -> Observation:
        """A fresh reading of the current state (new noise draws, no time advance)."""
        return self._measure()

    def _measure(self) -> Observation:
        """Targets moved to the current hand pose (palm-attached goals follow the wrist),
        then the sensors read."""
        self.scene.place_targets(self.data, self._goal, self._goal_frame)
        return self._sensors.measure(self.data, self._step, self._goal)

    # ----- state, geometry ----------------------------------------------------------------
    def get_state(self) -> SimState:
        d = self.data
        return SimState(
            qpos=d.qpos.copy(), qvel=d.qvel.copy(), ctrl=d.ctrl.copy(),
            qacc_warmstart=d.qacc_warmstart.copy(), mocap_pos=d.mocap_pos.copy(),
            mocap_quat=d.mocap_quat.copy(), time=float(d.time), step=self._step,
            goal=self._goal.copy(), goal_frame=self._goal_frame, command=self._command.copy(),
            pending=tuple(p.copy() for p in self._pending),
        )

    def set_state(self, state: SimState) -> None:
        """Restore a ``get_state`` snapshot exactly (random streams are not part of it)."""
        m, d = self.model, self.data
        self._check_shape(state.qpos, m.nq, "qpos")
        self._check_shape(state.qvel, m.nv, "qvel")
        d.qpos[:], d.qvel[:] = state.qpos, state.qvel
        if state.ctrl is not None:
            d.ctrl[:] = state.ctrl
        if state.qacc_warmstart is not None:
            d.qacc_warmstart[:] = state.qacc_warmstart
        if state.mocap_pos is not None:
            d.mocap_pos[:] = state.mocap_pos
        if state.mocap_quat is not None:
            d.mocap_quat[:] = state.mocap_quat
        d.time = state.time
        self._step = state.step
        if state.goal is not None:
            self._goal = self.scene.check_goal(state.goal)
            self._goal_frame = self.scene.check_goal_frame(state.goal_frame)
        if state.command is not None:
            self._check_shape(state.command, m.nu, "command")
            self._command = np.asarray(state.command, dtype=np.float64).copy()
        for pending in state.pending:
            self._check_shape(pending, m.nu, "pending command")
        self._pending = deque(np.asarray(p, dtype=np.float64).copy() for p in state.pending)
        mujoco.mj_forward(m, d)
        self._guard.arm(d)
        self._sensors.reset(d, self._step)

    def geometry(self, **options: object) -> list[GeomPrimitive]:
        """Hand collision geoms, objects and targets as marker primitives at the current
        state (see ``geometry.scene_primitives`` for the options)."""
        mujoco.mj_kinematics(self.model, self.data)
        return scene_primitives(self.scene, self.data, **options)

    # ----- internals ----------------------------------------------------------------------
    def _seed(self, seed: int) -> None:
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        init, encoder, tracker, dropout = np.random.SeedSequence(int(seed)).spawn(4)
        self._init_rng = np.random.default_rng(init)
        self._sensors = Sensors(
            self.scene, self.config.realism, np.random.default_rng(encoder),
            np.random.default_rng(tracker), np.random.default_rng(dropout),
        )

    def _perturb_start_state(self) -> None:
        cfg, m, d = self.config, self.model, self.data
        if cfg.reset_joint_noise_std > 0:
            nu = m.nu
            d.qpos[:nu] += self._init_rng.normal(0.0, cfg.reset_joint_noise_std, nu)
            lo, hi = m.jnt_range[:nu].T
            d.qpos[:nu] = np.clip(d.qpos[:nu], lo, hi)
        if cfg.reset_object_noise_std > 0:
            adr = self.scene.object_qpos_adr[np.array(self.scene.object_qpos_kind) == "pos"]
            d.qpos[adr] += self._init_rng.normal(0.0, cfg.reset_object_noise_std, adr.size)

    def _command_from(self, state: SimState) -> np.ndarray:
        for what in ("command", "ctrl"):
            value = getattr(state, what)
            if value is not None:
                self._check_shape(value, self.model.nu, f"initial_state.{what}")
                return np.asarray(value, dtype=np.float64).copy()
        return self.action_map.mid.copy()

    @staticmethod
    def _check_shape(arr: np.ndarray, n: int, what: str) -> None:
        arr = np.asarray(arr)
        if arr.shape != (n,):
            raise ValueError(f"{what} must have shape ({n},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} has non-finite values")


def _nonfinite(data: mujoco.MjData) -> str | None:
    for name in ("qpos", "qvel", "qacc"):
        if not np.all(np.isfinite(getattr(data, name))):
            return f"non-finite {name}"
    return None
