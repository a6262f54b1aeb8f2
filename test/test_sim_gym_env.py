"""HandEnv: gymnasium's checker, the stack's episode definition, rewards, drops, seeding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env

from mbrl_ros.core.estimation.state_assembly import KalmanSettings
from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.launch.packages import package_share
from mbrl_ros.nodes.task_params import default_task_values, task_from_params
from mbrl_ros.sim import HandEnv, HandSim, SimConfig
from mbrl_ros.sim.rollout import roll_out

TASKS = ("baoding", "cube")


@pytest.fixture(scope="module")
def envs():
    made = {task: HandEnv(task) for task in TASKS}
    yield made
    for env in made.values():
        env.close()


def _rollout(env: HandEnv, seed: int, actions: np.ndarray):
    obs, info = env.reset(seed=seed)
    run = roll_out(env, obs, lambda t, _: actions[t], len(actions))
    return run.states, info


def test_roll_out_stops_at_a_drop_and_records_what_was_stepped(envs):
    env = envs["baoding"]
    obs, _ = env.reset(seed=2)
    pushes = np.tile(np.r_[np.ones(12), -np.ones(12)], (100, 1))  # flings the balls off
    run = roll_out(env, obs, lambda t, _: pushes[t])
    assert run.terminated[-1] and not run.terminated[:-1].any()
    assert run.steps < 100 and run.states.shape == (run.steps + 1, 40)
    assert run.actions.shape == (run.steps, 24) and run.rewards.shape == (run.steps,)
    assert np.array_equal(run.states[0], obs.astype(np.float64))
    seen = []
    obs, _ = env.reset(seed=2)
    short = roll_out(env, obs, lambda t, state: seen.append(state.copy()) or pushes[t], 3)
    assert short.steps == 3 and not short.terminated.any()
    assert np.array_equal(seen[1], short.states[1].astype(np.float32))  # the env's own state
    rows = run.transitions(0.1)  # what a dataset stores of it: step k's state and successor
    assert np.array_equal(rows["state"][1], run.states[1])
    assert np.array_equal(rows["next_state"][1], run.states[2])
    assert len(rows["next_state"]) == run.steps and rows["done"][-1]
    np.testing.assert_allclose(rows["time"][:3], [0.0, 0.1, 0.2])


def _goal_fields(task, obs, goal) -> np.ndarray:
    """What the state's goal fields hold for ``goal`` (Baoding: world xy of palm targets)."""
    return task.goal_field_values(torch.as_tensor(obs, dtype=torch.float64),
                                  torch.as_tensor(goal, dtype=torch.float64)).numpy()

@pytest.mark.parametrize("task", TASKS)
def test_passes_gymnasiums_env_checker(task, envs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded observation space: a warning, not a fault
        check_env(envs[task], skip_render_check=True)


@pytest.mark.parametrize(("task", "dim", "length"), [("baoding", 40, 100), ("cube", 39, 70)])
def test_reset_gives_the_experiment_managers_episode(task, dim, length, envs):
    env = envs[task]
    obs, info = env.reset(seed=7)
    assert obs.shape == (dim,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (24,)
    assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
    assert env.episode_length == env.task.episode_length == length
    goals = info["goals"]
    expected = env.task.episode_goals(7, length + 1).double().numpy()
    assert goals.dtype == np.float64 and goals.shape == (length + 1, env.task.goal_dim)
    np.testing.assert_array_equal(goals, expected)
    np.testing.assert_allclose(obs[env.task.goal_slice], _goal_fields(env.task, obs, goals[0]),
                               rtol=1e-6)
    assert info["step"] == 0 and info["episode_seed"] == 7


@pytest.mark.parametrize("task", TASKS)
def test_defaults_are_the_stacks_config_files(task, envs):
    """The simulator, task and estimator settings the ROS stack loads from config/*.yaml."""
    config = package_share("mbrl_ros") / "config"

    def params(name: str, node: str) -> dict:
        doc = yaml.safe_load((config / name).read_text())
        flat: dict = {}
        for key in ("/**", f"/**/{node}"):
            todo = [("", doc.get(key, {}).get("ros__parameters", {}))]
            while todo:
                prefix, block = todo.pop()
                for k, v in block.items():
                    if isinstance(v, dict):
                        todo.append((f"{prefix}{k}.", v))
                    else:
                        flat[prefix + k] = v
        return flat

    env = envs[task]
    sim = params("sim.yaml", "shadow_hand_sim")
    cfg = env.sim.config
    assert cfg.frame_skip == sim["frame_skip"]
    assert cfg.command_velocity_limit == sim["command_velocity_limit"]
    assert cfg.realism.to_dict() == {k.split(".", 1)[1]: v for k, v in sim.items()
                                     if k.startswith("realism.")}
    assert cfg.reset_joint_noise_std == cfg.reset_object_noise_std == 0.0  # the node's
    assert not sim["tracker_reports_velocity"]  # estimator works from poses, as HandEnv
    values = default_task_values()
    values.update(params(f"{task}.yaml", "state_estimator"))
    stack = task_from_params(values)
    assert stack.episode_length == env.task.episode_length
    assert vars(stack).keys() == vars(env.task).keys()
    for key, value in vars(stack).items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, vars(env.task)[key]), key
        else:
            assert value == vars(env.task)[key], key
    est = params("estimator.yaml", "state_estimator")
    kalman = env.source.assembler.filters[env.source.assembler.object_names[0]]
    defaults = KalmanSettings()
    assert defaults.position_noise_std == est["kalman.position_noise_std"]
    assert defaults.linear_accel_psd == est["kalman.linear_accel_psd"]
    assert defaults.angular_accel_psd == est["kalman.angular_accel_psd"]
    assert defaults.initial_linear_rate_std == est["kalman.initial_linear_vel_std"]
    if task == "cube":
        np.testing.assert_array_equal(kalman.origin, load_robot().object_origins["cube"])


@pytest.mark.parametrize("task", TASKS)
def test_reward_and_score_are_the_core_tasks(task, envs):
    env = envs[task]
    obs, info = env.reset(seed=11)
    goals = torch.as_tensor(info["goals"])
    rng = np.random.default_rng(0)
    for k in range(1, 16):
        action = rng.uniform(-0.3, 0.3, 24).astype(np.float32)
        obs, reward, terminated, truncated, step_info = env.step(action)
        state = torch.as_tensor(obs, dtype=torch.float64)
        expected, dropped = env.task.reward(state, torch.as_tensor(action, dtype=torch.float64),
                                            goals[k])
        assert step_info["step"] == k
        assert reward == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
        assert step_info["score"] == pytest.approx(float(env.task.step_score(state, goals[k])),
                                                   rel=1e-5, abs=1e-6)
        assert terminated == step_info["dropped"] == bool(dropped)
        np.testing.assert_allclose(obs[env.task.goal_slice],
                                   _goal_fields(env.task, obs, info["goals"][k]), rtol=1e-6)
        if terminated or truncated:
            break


def test_a_tracker_reporting_velocity_gives_the_balls_true_velocity():
    """``tracker_reports_velocity``: the estimator fuses the tracker's twists, so the balls'
    velocity fields follow the simulator's true ones; from poses alone (10 per second) they
    lag the contacts by up to a step."""
    actions = np.random.default_rng(2).uniform(-0.6, 0.6, (15, 24))
    ex, _ = _rollout(HandEnv("baoding", state_source="sim"), 4, actions)
    poses, _ = _rollout(HandEnv("baoding"), 4, actions)
    twists, _ = _rollout(HandEnv("baoding", tracker_reports_velocity=True), 4, actions)
    layout = HandEnv("baoding").task.layout
    vel = [i for n in ("ball1_vel", "ball2_vel") for i in range(40)[layout.slice(n)]]
    n = min(len(ex), len(poses), len(twists))
    err_twists = np.abs(twists[:n, vel] - ex[:n, vel]).mean()
    err_poses = np.abs(poses[:n, vel] - ex[:n, vel]).mean()
    assert err_twists < 0.2 * err_poses, (err_twists, err_poses)
    assert err_twists < 0.01  # m/s
    others = [i for i in range(40) if i not in vel]
    np.testing.assert_allclose(twists[:n, others], poses[:n, others], rtol=0, atol=2e-3)


@pytest.mark.parametrize("task", TASKS)
def test_states_are_the_simulators_task_observation(task):
    """``sim`` source: HandSim's own task state. ``estimator`` source: the same joints and
    goals; object poses through the estimator's filters (tracker noise std 1 mm / 10 mrad
    assumed, so within a fraction of that) and velocities from poses, as on the stack."""
    estimated, exact = HandEnv(task), HandEnv(task, state_source="sim")
    sim = HandSim(task, SimConfig())
    actions = np.random.default_rng(1).uniform(-0.1, 0.1, (12, 24))
    est, _ = _rollout(estimated, 3, actions)
    ex, info = _rollout(exact, 3, actions)
    truth = [sim.reset(seed=3).task_obs]
    for a in actions[: len(ex) - 1]:
        truth.append(sim.step(a).observation.task_obs)
    truth = np.array(truth)
    estimated.task.insert_goal_(torch.from_numpy(truth),
                                torch.from_numpy(info["goals"][: len(truth)]))
    np.testing.assert_allclose(ex, truth.astype(np.float32), rtol=0, atol=1e-7)
    layout = estimated.task.layout
    velocity = {"baoding": ("ball1_vel", "ball2_vel"), "cube": ("cube_linvel", "cube_angvel")}
    for name in layout.names:
        if name not in velocity[task]:
            exact_field = name == "joints" or name in estimated.task.goal_fields
            np.testing.assert_allclose(est[:, layout.slice(name)], ex[:, layout.slice(name)],
                                       rtol=0, atol=0 if exact_field else 1e-3, err_msg=name)
    np.testing.assert_array_equal(est[0, layout.slice(velocity[task][0])], 0.0)  # at rest


def test_a_drop_terminates_with_pddms_penalty(envs):
    env = envs["baoding"]
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    for _ in range(env.episode_length):  # random joint jumps drop a ball within a few steps
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 24))
        low = min(obs[env.task._ball1_z], obs[env.task._ball2_z])
        assert terminated == (low < env.task.drop_height) == info["dropped"]
        if terminated:
            break
    assert terminated and not truncated
    assert reward < -env.task.drop_penalty
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(24))


@pytest.mark.parametrize("task", TASKS)
def test_truncated_exactly_at_the_episode_length(task, envs):
    env = envs[task]
    env.reset(seed=0)
    for k in range(1, env.episode_length + 1):  # the keyframe action holds the object
        _, _, terminated, truncated, info = env.step(np.zeros(24, dtype=np.float32))
        assert not terminated
        assert truncated == (k == env.episode_length)
    assert info["step"] == env.episode_length
    short = HandEnv(task, episode_length=5)
    _, info = short.reset(seed=0)
    assert info["goals"].shape[0] == 6 and short.task.episode_length == 5


def test_seeded_resets_reproduce():
    actions = np.random.default_rng(4).uniform(-0.4, 0.4, (8, 24))
    a, b = HandEnv("cube"), HandEnv("cube")
    first, info_a = _rollout(a, 5, actions)
    again, _ = _rollout(a, 5, actions)
    other, info_b = _rollout(b, 5, actions)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, other)
    np.testing.assert_array_equal(info_a["goals"], info_b["goals"])
    # seedless resets continue the seeded sequence identically in both envs
    seeds_a = [a.reset()[1]["episode_seed"] for _ in range(3)]
    b.reset(seed=5)
    seeds_b = [b.reset()[1]["episode_seed"] for _ in range(3)]
    assert seeds_a == seeds_b and len(set(seeds_a)) == 3
    for s in range(4):  # the cube holds one goal per episode, picked by the episode seed
        goals = a.reset(seed=s)[1]["goals"]
        np.testing.assert_array_equal(goals, a.task.episode_goals(s, len(goals)).numpy())
        assert (goals == goals[0]).all()
    assert len({tuple(a.reset(seed=s)[1]["goals"][0]) for s in range(4)}) == 4


def test_bad_actions_are_refused_and_the_episode_goes_on(envs):
    env = envs["baoding"]
    env.reset(seed=0)
    for bad in (np.full(24, np.nan), np.zeros(23)):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    _, _, _, _, info = env.step(np.zeros(24))
    assert info["step"] == 1


def test_tracker_dropouts_are_bridged_like_the_estimator():
    env = HandEnv("baoding", realism={"tracker_dropout_rate": 0.5})
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        obs, *_ = env.step(np.zeros(24))
        assert np.all(np.isfinite(obs))
    exact = HandEnv("baoding", state_source="sim", realism={"tracker_dropout_rate": 0.5})
    exact.reset(seed=1)
    with pytest.raises(ValueError, match="tracker"):
        for _ in range(10):
            exact.step(np.zeros(24))
    with pytest.raises(ValueError):
        HandEnv("baoding", not_an_option=1)
    with pytest.raises(ValueError):
        HandEnv("valve")


def test_a_physics_fault_truncates_with_the_last_good_state():
    env = HandEnv("baoding")
    env.reset(seed=0)
    good, *_ = env.step(np.zeros(24))
    env.sim.data.qvel[:] = 1e12  # blows up in the next step: MuJoCo warns and resets
    obs, reward, terminated, truncated, info = env.step(np.zeros(24))
    assert truncated and not terminated and "BADQVEL" in info["fault"]
    np.testing.assert_array_equal(obs, good)
    assert np.isfinite(reward)
    env.reset(seed=0)  # and the env is usable again
    assert env.step(np.zeros(24))[4]["fault"] is None
