"""``dynamics_trainer`` as a real process, fed the protocol's stream from a real HandSim.

The tests run in file order on one trainer (module fixture): recording, training, the
sanity bound, then a restart of the same process configuration on the same disk.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.ros import spinning_node, start_process, stop_process
from helpers.waiting import call_service, wait_for

from mbrl_ros.launch.packages import executable

pytestmark = pytest.mark.ros
NS = "/trainer_test"
NODE = f"{NS}/dynamics_trainer"
T = 20  # the task's episode length in this test (PDDM: 100); schedules may say otherwise


def _start_trainer(dataset_dir: Path):
    # A small ensemble and few epochs keep the jobs short. max_val_loss is loose here
    # because ~40 transitions and 5 epochs cannot beat the real bound reliably; the bound
    # itself is tested with an absurd value below.
    return start_process([
        str(executable("mbrl_ros", "dynamics_trainer")), "--ros-args", "-r", f"__ns:={NS}",
        "-p", f"dataset_dir:={dataset_dir}", "-p", f"episode_length:={T}",
        "-p", "ensemble.members:=2", "-p", "ensemble.hidden:=[32,32]",
        "-p", "train.epochs:=5", "-p", "train.batch_size:=64", "-p", "min_transitions:=20",
        "-p", "eval_horizon:=3", "-p", "max_val_loss:=1000.0", "-p", "action_grace_s:=0.2"])


class TrainerClient:
    """Plays estimator + planner + experiment manager towards the trainer."""

    def __init__(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import SetParameters
        from rclpy.action import ActionClient
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Float64

        from mbrl_ros.action import TrainModel
        from mbrl_ros.msg import GoalSchedule, PlannedAction, TaskState, TrainingMetrics
        from mbrl_ros.srv import GetStatus

        self.node = node
        self.lock = threading.Lock()
        self.latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                  reliability=ReliabilityPolicy.RELIABLE)
        # Whole episodes go out in bursts: the history holds them until acknowledged.
        self.states = node.create_publisher(TaskState, f"{NS}/task_state", 100)
        self.actions = node.create_publisher(PlannedAction, f"{NS}/planned_action", 100)
        self.schedules = node.create_publisher(GoalSchedule, f"{NS}/goal_schedule",
                                               self.latched)
        self.models = self.subscribe_models()
        self.metrics: list = []
        self.val_loss: list[float] = []
        self.diagnostics: list = []
        node.create_subscription(TrainingMetrics, f"{NODE}/metrics", self._keep(self.metrics),
                                 10)
        node.create_subscription(Float64, f"{NODE}/val_loss",
                                 lambda m: self.val_loss.append(m.data), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 self._keep(self.diagnostics), 50)
        self.train_client = ActionClient(node, TrainModel, f"{NODE}/train")
        self.status_cli = node.create_client(GetStatus, f"{NODE}/get_status")
        self.param_cli = node.create_client(SetParameters, f"{NODE}/set_parameters")
        self.wait_ready()

    def _keep(self, store: list):
        def keep(msg) -> None:
            with self.lock:
                store.append(msg)
        return keep

    def subscribe_models(self) -> list:
        from mbrl_ros.msg import ModelUpdate

        received: list = []
        self.node.create_subscription(ModelUpdate, f"{NS}/model_update", self._keep(received),
                                      self.latched)
        return received

    def wait_ready(self) -> None:
        wait_for(lambda: self.status_cli.wait_for_service(timeout_sec=0.1), 60, "the trainer")
        wait_for(self.train_client.server_is_ready, 30, "the trainer's train action")
        for pub in (self.states, self.actions, self.schedules):
            wait_for(lambda p=pub: p.get_subscription_count() > 0, 20, "trainer subscriptions")

    def call(self, client, request, what: str, idempotent: bool = False):
        return call_service(client, request, what, idempotent=idempotent)

    def status(self):
        from mbrl_ros.srv import GetStatus

        return self.call(self.status_cli, GetStatus.Request(), "get_status", idempotent=True)

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.status().values}

    def counted(self, key: str) -> int:
        return int(self.values().get(key, 0))

    def train(self, epochs: int = 0):
        """The trainer's answer to a ``~/train`` goal: its goal handle (``accepted``)."""
        from mbrl_ros.action import TrainModel

        future = self.train_client.send_goal_async(
            TrainModel.Goal(from_scratch=True, epochs=epochs))
        return wait_for(lambda: future.done() and future.result(), 30, "the goal response")

    def result(self, goal, timeout: float = 120):
        """An accepted goal's typed result (its job has ended)."""
        future = goal.get_result_async()
        return wait_for(lambda: future.done() and future.result(), timeout,
                        "the goal's result").result

    def refusal(self) -> str:
        """Why the newest goal was refused (a rejected goal carries no reason)."""
        return self.values()["train_refusal"]

    def set_param(self, name: str, value) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        res = self.call(self.param_cli, req, "set_parameters")
        assert res.results[0].successful, res.results[0].reason

    def diagnostic_value(self, key: str) -> str | None:
        with self.lock:
            for array in reversed(self.diagnostics):
                for status in array.status:
                    if status.name == NODE:
                        for kv in status.values:
                            if kv.key == key:
                                return kv.value
        return None


class Stream:
    """Episodes of real simulated Baoding states published per the episode protocol."""

    def __init__(self, client: TrainerClient) -> None:
        from mbrl_ros.nodes.task_params import default_task_values, task_from_params
        from mbrl_ros.sim import HandSim

        self.client = client
        self.task = task_from_params({**default_task_values(), "episode_length": T})
        self.sim = HandSim("baoding")
        self.rng = np.random.default_rng(0)
        self.sent_states = self.sent_actions = 0

    def state_msg(self, episode: int, step: int, state, goal, stamp: float):
        from mbrl_ros.msg import StateField, TaskState
        from mbrl_ros.nodes.conversions import time_from_ns

        msg = TaskState(task="baoding", episode_id=episode, step=step, stale=False, age=0.0)
        msg.header.stamp = time_from_ns(round(stamp * 1e9))
        msg.header.frame_id = "world"
        msg.state = [float(v) for v in state]
        msg.layout = [StateField(name=n, start=s, size=z)
                      for n, s, z in self.task.layout.to_msg_fields()]
        msg.goal = [float(v) for v in goal]
        return msg

    def action_msg(self, episode: int, step: int, action):
        from mbrl_ros.msg import PlannedAction

        msg = PlannedAction(episode_id=episode, step=step, action_dim=24)
        msg.action = [float(v) for v in action]
        msg.stats.planner = "exploration"
        return msg

    def publish_state(self, msg, counts: bool = True) -> None:
        self.client.states.publish(msg)
        self.sent_states += counts

    def publish_action(self, msg, counts: bool = True) -> None:
        self.client.actions.publish(msg)
        self.sent_actions += counts

    def sync(self) -> None:
        """Wait until the trainer has taken in every valid message sent so far."""
        wait_for(lambda: (self.client.counted("recorder_states"),
                          self.client.counted("recorder_actions"))
                 == (self.sent_states, self.sent_actions), 30, "the trainer to catch up")

    def episode(self, episode: int, schedule_length: int, last_state: int, hooks=None):
        """Reset, publish the schedule, then states 0..last_state and an action each."""
        from mbrl_ros.msg import GoalSchedule

        goals = self.task.episode_goals(0, (schedule_length or T) + 1).numpy()
        self.client.schedules.publish(GoalSchedule(
            task="baoding", episode_id=episode, episode_length=schedule_length,
            goal_dim=6, goals=goals.ravel().astype(float).tolist()))
        obs = self.sim.reset(seed=episode)
        stamp0 = 100.0 * episode
        for k in range(last_state + 1):
            goal = goals[min(k, len(goals) - 1)]
            state = obs.task_obs.copy()
            self.task.insert_goal_(torch.from_numpy(state),
                                   torch.as_tensor(goal, dtype=torch.float64))
            msg = self.state_msg(episode, k, state, goal, stamp0 + 0.1 * k)
            if hooks and k in hooks:
                hooks[k](msg)
            self.publish_state(msg)
            if k == schedule_length:  # the last state: the planner does not act on it
                break
            action = self.rng.uniform(-0.5, 0.5, 24)
            self.publish_action(self.action_msg(episode, k, action))
            obs = self.sim.step(action).observation
        self.sync()


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    dataset_dir = tmp_path_factory.mktemp("trainer") / "dataset"
    proc = _start_trainer(dataset_dir)
    box = {"proc": proc, "dir": dataset_dir}
    try:
        with spinning_node("trainer_test") as node:
            box["client"] = TrainerClient(node)
            box["stream"] = Stream(box["client"])
            yield box
    finally:
        print(stop_process(box["proc"]))


def test_records_every_executed_step_once_and_never_across_resets(trainer):
    client, stream = trainer["client"], trainer["stream"]
    # Episode 1: a 15-step schedule (like PDDM's short random rollouts): stored at state 15.
    stream.episode(1, schedule_length=15, last_state=15)
    wait_for(lambda: client.status().num_transitions == 15, 20, "episode 1 to be stored")

    # Episode 2: full length, with a malformed state, a re-published state and action, and
    # an out-of-range action in between; none of them changes what is recorded.
    def malformed(msg):
        bad = stream.state_msg(2, msg.step, list(msg.state), list(msg.goal), 0.0)
        bad.state[30] = math.nan
        stream.publish_state(bad, counts=False)
        short = stream.state_msg(2, msg.step, list(msg.state)[:39], list(msg.goal), 0.0)
        stream.publish_state(short, counts=False)
        wait_for(lambda: client.counted("rejected_task_state") == 2, 20, "the rejections")

    def repeated(msg):
        stream.publish_state(msg)  # the same stamp again: a lockstep re-publish
        stream.publish_action(stream.action_msg(2, msg.step - 1, np.zeros(24)))
        stream.publish_action(stream.action_msg(2, msg.step, np.full(24, 1.5)), counts=False)
        wait_for(lambda: client.counted("rejected_planned_action") == 1, 20, "the rejection")

    stream.episode(2, schedule_length=T, last_state=T, hooks={6: malformed, 8: repeated})
    wait_for(lambda: client.status().num_transitions == 35, 20, "episode 2 to be stored")
    values = client.values()
    assert values["recorder_duplicate_states"] == "1"
    assert values["recorder_replaced_actions"] == "1"
    wait_for(lambda: client.diagnostic_value("rejected_task_state") == "2", 20,
             "the rejections on /diagnostics")

    # Episode 3 is cut short at state 12 by the reset into episode 4: 12 transitions.
    stream.episode(3, schedule_length=T, last_state=12)
    stream.episode(4, schedule_length=T, last_state=0)
    wait_for(lambda: client.status().num_transitions == 47, 20, "episode 3 to be stored")
    status = client.status()
    assert (status.num_episodes, status.state, status.model_version) == (3, "idle", 0)
    assert status.node == NODE  # its fully qualified name, as the planner answers
    assert client.values()["recorder_skipped_missing_state"] == "0"
    files = sorted(trainer["dir"].glob("episode_*.npz"))  # read, never opened as a dataset
    metas = [json.loads(str(np.load(f)["meta"])) for f in files]
    assert [(m["episode_id"], m["last_step"], m["cut_short"]) for m in metas] == [
        (1, 15, False), (2, 20, False), (3, 12, True)]
    assert {m["policy"] for m in metas} == {"exploration"}


def _nice_values(pid: int) -> set[int]:
    values = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        values.add(int(fields[16]))  # field 19 of stat: nice
    return values


def test_train_returns_at_once_and_publishes_versions_1_then_2(trainer):
    from mbrl_ros.core.models.serialization import checksum, model_from_bytes

    client = trainer["client"]
    res = client.train(epochs=1500)  # long enough to be seen running
    assert res.accepted, client.refusal()
    assert client.values()["job_id"] == "1"
    busy = client.train()
    status = client.status()  # served while training
    assert not busy.accepted and "running" in client.refusal()
    assert status.state == "training"
    assert 10 in _nice_values(trainer["proc"].pid), "no thread runs at niceness 10"
    wait_for(lambda: client.models, 120, "model version 1")
    first = client.models[-1]
    assert first.version == 1 and first.task == "baoding" and first.format_version == 1
    data = bytes(first.weights)
    assert checksum(data) == first.checksum
    model, meta = model_from_bytes(data)
    assert model.num_members == 2 and model.config.hidden_sizes == (32, 32)
    assert list(first.state_fields) == list(trainer["stream"].task.layout.names)
    assert meta["version"] == 1 and first.metrics.accepted and first.metrics.epochs == 1500
    assert len(first.metrics.val_multi_step_mse) == 3
    result = client.result(res)  # the goal's typed result: its job, the same model
    assert result.job_id == 1 and result.accepted and result.model_version == 1

    wait_for(lambda: client.status().state == "idle", 30, "the job to end")
    assert client.train().accepted
    wait_for(lambda: client.models[-1].version == 2, 60, "model version 2")
    second = client.models[-1]
    assert checksum(bytes(second.weights)) == second.checksum
    assert second.metrics.epochs == 5 and second.metrics.num_transitions == 47
    wait_for(lambda: len(client.metrics) >= 2, 20, "the metrics of both jobs")
    assert all(m.accepted for m in client.metrics) and client.val_loss

    late = client.subscribe_models()  # a planner starting now gets the newest model only
    wait_for(lambda: late, 20, "the latched model update")
    assert [m.version for m in late] == [2]
    trainer["checksum"] = second.checksum


def test_a_model_above_the_sanity_bound_is_not_published(trainer):
    client = trainer["client"]
    wait_for(lambda: client.status().state == "idle", 30, "the previous job to end")
    client.set_param("max_val_loss", 1e-9)
    before = len(client.metrics)
    assert client.train().accepted
    wait_for(lambda: len(client.metrics) > before, 60, "the metrics of the rejected job")
    rejected = client.metrics[-1]
    assert not rejected.accepted and rejected.model_version == 2
    assert math.isfinite(rejected.val_loss) and rejected.val_loss > 1e-9
    assert client.models[-1].version == 2 and client.status().model_version == 2
    assert client.values()["last_job_accepted"] == "False"


def test_a_restarted_trainer_resumes_its_dataset_and_republishes_its_newest_model(trainer):
    out = stop_process(trainer["proc"])
    assert "stored episode 3" in out and "REJECTED" in out
    trainer["proc"] = _start_trainer(trainer["dir"])
    client = trainer["client"]
    client.wait_ready()
    status = client.status()
    assert (status.num_transitions, status.num_episodes) == (47, 3)
    assert status.model_version == 2
    late = client.subscribe_models()
    wait_for(lambda: late, 20, "the republished model")
    assert late[-1].version == 2 and late[-1].checksum == trainer["checksum"]


def test_store_episode_fills_in_what_the_recorder_missed_and_nothing_twice(trainer):
    """The experiment manager's backfill: the recorder saw episode 10 from step 8 on (as a
    trainer respawned mid-episode does); the whole stream sent to ``store_episode`` adds
    steps 0..7 only, and sending it again adds nothing."""
    from mbrl_ros.msg import GoalSchedule
    from mbrl_ros.srv import StoreEpisode

    client, stream = trainer["client"], trainer["stream"]
    cli = client.node.create_client(StoreEpisode, f"{NODE}/store_episode")
    wait_for(lambda: cli.wait_for_service(timeout_sec=0.1), 20, "store_episode")
    before = client.status().num_transitions
    goals = stream.task.episode_goals(0, T + 1).numpy()
    client.schedules.publish(GoalSchedule(task="baoding", episode_id=10, episode_length=T,
                                          goal_dim=6, goals=goals.ravel().tolist()))
    obs = stream.sim.reset(seed=10)
    states, actions = [], []
    for k in range(T + 1):
        state = obs.task_obs.copy()
        stream.task.insert_goal_(torch.from_numpy(state),
                                 torch.as_tensor(goals[k], dtype=torch.float64))
        states.append(state)
        if k < T:
            actions.append(stream.rng.uniform(-0.5, 0.5, 24))
            obs = stream.sim.step(actions[-1]).observation
    for k in range(8, T + 1):  # live from step 8 on
        stream.publish_state(stream.state_msg(10, k, states[k], goals[k], 1000.0 + 0.1 * k))
        if k < T:
            stream.publish_action(stream.action_msg(10, k, actions[k]))
    wait_for(lambda: client.status().num_transitions == before + T - 8, 20,
             "the live part of episode 10")

    def request(**change) -> StoreEpisode.Request:
        fields = dict(
            task="baoding", episode_id=10, episode_length=T, state_steps=list(range(T + 1)),
            states=np.concatenate(states).tolist(), goals=goals.ravel().tolist(),
            stamps=[1000.0 + 0.1 * k for k in range(T + 1)], stale=[False] * (T + 1),
            action_steps=list(range(T)), actions=np.concatenate(actions).tolist(),
            policies=["exploration"] * T, model_versions=[0] * T)
        return StoreEpisode.Request(**{**fields, **change})

    res = client.call(cli, request(), "store_episode")
    assert res.success and (res.stored, res.already_held) == (8, T - 8), res.message
    assert client.status().num_transitions == before + T
    newest = max(trainer["dir"].glob("episode_*.npz"))
    with np.load(newest) as z:
        meta = json.loads(str(z["meta"]))
        assert z["step"].tolist() == list(range(8))
        np.testing.assert_allclose(z["state"], np.stack(states[:8]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(z["next_state"], np.stack(states[1:9]), rtol=1e-6,
                                   atol=1e-6)
    assert (meta["episode_id"], meta["end"], meta["first_step"], meta["last_step"]) == (
        10, "backfilled", 0, 8)
    again = client.call(cli, request(), "store_episode again")
    assert again.success and (again.stored, again.already_held) == (0, T), again.message

    # Malformed requests are refused, counted and store nothing.
    nan_states = np.concatenate(states)
    nan_states[5] = math.nan
    bad = [request(states=nan_states.tolist(), episode_id=11),
           request(actions=[0.0] * 5, episode_id=11),
           request(task="cube", episode_id=11)]
    for i, req in enumerate(bad, start=1):
        res = client.call(cli, req, "a malformed store_episode")
        assert not res.success and res.stored == 0, res.message
        wait_for(lambda i=i: client.counted("rejected_store_episode") == i, 20,
                 "the refusal in the status")
    assert client.status().num_transitions == before + T
    assert trainer["proc"].poll() is None


def test_the_experiments_training_goal_is_sent_again_to_a_trainer_restarted_mid_job(trainer):
    """TrainerLink (the experiment manager's side): a goal lost with a killed trainer (the
    respawned one answers idle and does not know it) is sent again, and its typed result
    arrives from the new process."""
    import time

    from rclpy.callback_groups import ReentrantCallbackGroup

    from mbrl_ros.nodes.patient_calls import PatientCaller
    from mbrl_ros.nodes.trainer_link import TrainerLink

    client = trainer["client"]
    client.set_param("max_val_loss", 1000.0)
    calls = PatientCaller(client.node, threading.Event(), startup_timeout_s=60.0)
    link = TrainerLink(client.node, NODE, calls, "baoding", ReentrantCallbackGroup())
    wait_for(link.train_ready, 30, "the train action")
    box: dict = {}

    def train() -> None:
        try:
            box["result"] = link._run_training(1500, time.monotonic() + 600, 1, 1)
        except Exception as exc:  # reported below
            box["error"] = exc

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    wait_for(lambda: client.status().state == "training", 30, "the first job to run")
    old = trainer["proc"]
    old.kill()  # like a crash: no shutdown, its goal is lost
    stop_process(old)
    trainer["proc"] = _start_trainer(trainer["dir"])
    client.wait_ready()
    thread.join(600)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.job_id == 1, "not the restarted trainer's job"  # it counts from 1 again
    assert result.accepted and result.model_version == 3 and result.metrics.epochs == 1500
    assert result.num_transitions == client.status().num_transitions
    wait_for(lambda: client.models and client.models[-1].version == 3, 30, "model version 3")


def test_the_experiments_trainer_link_hears_the_heartbeat_and_notices_its_silence(trainer):
    """The experiment starts its first episode only once TrainerLink has heard the
    trainer's ~/num_transitions heartbeat, and after each episode tells "stored" from
    "down" by it: heard while the trainer runs, silent soon after a kill, heard again from
    the respawned process."""
    from rclpy.callback_groups import ReentrantCallbackGroup

    from mbrl_ros.nodes.patient_calls import PatientCaller
    from mbrl_ros.nodes.trainer_link import TRAINER_SILENT_S, TrainerLink

    client = trainer["client"]
    calls = PatientCaller(client.node, threading.Event(), startup_timeout_s=60.0)
    link = TrainerLink(client.node, NODE, calls, "baoding", ReentrantCallbackGroup())
    assert link.silent()  # nothing heard yet: the experiment would wait
    wait_for(lambda: not link.silent(), 30, "the running trainer's heartbeat")
    old = trainer["proc"]
    old.kill()
    stop_process(old)
    wait_for(link.silent, TRAINER_SILENT_S + 10, "silence after the kill")
    trainer["proc"] = _start_trainer(trainer["dir"])
    client.wait_ready()
    wait_for(lambda: not link.silent(), 30, "the respawned trainer's heartbeat")
