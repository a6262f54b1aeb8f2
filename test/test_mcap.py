"""Recording to MCAP: schemas as rosbag2 writes them, the dataset export, the recorder on the
real stack, and what a SIGKILL of the recorder loses.

Files are read back with mcap's own reader and mcap-ros2-support's decoder (the libraries
Foxglove's Python tooling uses), not with this package's code alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.ros import spinning_node, start_process
from helpers.waiting import wait_for
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from mbrl_ros.core.data.dataset import EpisodeDataset, read_episodes
from mbrl_ros.core.tasks import make_task
from mbrl_ros.launch import cli
from mbrl_ros.results import read_metrics
from mbrl_ros.results.mcap_export import (
    TOPIC_ACTION,
    TOPIC_DONE,
    TOPIC_NEXT_STATE,
    TOPIC_REWARD,
    TOPIC_STATE,
)
from mbrl_ros.results.mcap_writer import (
    DEFINITION_SEPARATOR,
    McapRecordingWriter,
    message_definition,
    read_mcap,
)

pytestmark = pytest.mark.ros

SHARE = Path(sys.prefix) / "share"
RECORDER = Path(sys.prefix) / "lib" / "mbrl_ros" / "mcap_recorder"


def _decoded(path: Path) -> list[tuple[str, object, object]]:
    """(topic, mcap Message, decoded message) of every message, with the libraries only."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(channel.topic, message, decoded) for _, channel, message, decoded
                in reader.iter_decoded_messages(log_time_order=False)]


# ---- schemas ------------------------------------------------------------------------------

def test_definitions_are_concatenated_as_rosbag2_writes_them():
    def msg(package: str, name: str) -> str:
        return (SHARE / package / "msg" / f"{name}.msg").read_text()

    def part(dep: str) -> str:
        package, name = dep.split("/")
        return f"\n{DEFINITION_SEPARATOR}\nMSG: {dep}\n{msg(package, name)}"

    # the type's text, then each dependency once: depth first, in sorted order
    assert message_definition("mbrl_ros/msg/TaskState") == (
        msg("mbrl_ros", "TaskState") + part("mbrl_ros/StateField") + part("std_msgs/Header")
        + part("builtin_interfaces/Time"))
    assert message_definition("sensor_msgs/JointState") == (
        msg("sensor_msgs", "JointState") + part("std_msgs/Header")
        + part("builtin_interfaces/Time"))
    assert len(DEFINITION_SEPARATOR) == 80 and set(DEFINITION_SEPARATOR) == {"="}
    markers = message_definition("visualization_msgs/msg/MarkerArray")
    names = [line[5:] for line in markers.splitlines() if line.startswith("MSG: ")]
    assert len(names) == len(set(names)) and "std_msgs/Header" in names
    assert "geometry_msgs/Pose" in names and "builtin_interfaces/Duration" in names


def test_a_closed_chunk_is_on_disk_before_the_file_is_closed(tmp_path):
    from rclpy.serialization import serialize_message

    from mbrl_ros.msg import TaskState

    writer = McapRecordingWriter(tmp_path / "x.mcap", chunk_size=4096)
    channel = writer.add_channel("/hand/task_state", "mbrl_ros/msg/TaskState")
    data = serialize_message(TaskState(step=7, state=[1.0] * 100))
    for i in range(20):  # 20 x ~900 bytes: a few chunks closed by size
        writer.write(channel, data, log_time_ns=1000 + i)
    assert writer.chunks >= 3
    on_disk = read_mcap(tmp_path / "x.mcap")  # another handle, the writer still open
    assert not on_disk.complete and on_disk.lost_tail_bytes == 0
    in_chunks = len(on_disk.messages)
    assert 0 < in_chunks < 20  # the open chunk is not on disk yet
    writer.close_chunk()  # what the recorder's timer does
    assert len(read_mcap(tmp_path / "x.mcap").messages) == 20
    writer.close()
    assert [d.step for _, _, d in _decoded(tmp_path / "x.mcap")] == [7] * 20


def test_recorder_topics_parameter():
    from mbrl_ros.nodes.mcap_recorder_node import DEFAULT_TOPICS, STACK_TOPICS, topic_spec

    assert topic_spec("task_state") == ("task_state", "mbrl_ros/msg/TaskState")
    assert topic_spec("/tf:tf2_msgs/TFMessage") == ("/tf", "tf2_msgs/msg/TFMessage")
    assert "model_update" in STACK_TOPICS and "model_update" not in DEFAULT_TOPICS
    for bad, named in (("no_such_topic", "not a known stack topic"), ("~/x", "private"),
                       ("x:not a type", "not a ROS message type")):
        with pytest.raises(ValueError, match=named):
            topic_spec(bad)


# ---- (a) the dataset export -----------------------------------------------------------------

def _small_dataset(root: Path) -> EpisodeDataset:
    task = make_task("baoding")
    s, a = task.state_dim, task.action_dim
    rng = np.random.default_rng(0)
    dataset = EpisodeDataset(root)
    for stream_id, steps, policy in ((3, [0, 1, 2, 3], "random"), (4, [0, 1, 3, 4, 5], "mpc")):
        t = len(steps)
        dataset.append_episode(
            state=rng.normal(size=(t, s)), action=rng.uniform(-1, 1, size=(t, a)),
            next_state=rng.normal(size=(t, s)), reward=rng.normal(size=t),
            time=10.0 * stream_id + 0.1 * np.array(steps), done=np.arange(t) == t - 1,
            step=np.array(steps),  # episode 4 has a gap: step 2 was not recorded
            meta={"episode_id": stream_id, "policy": policy, "model_version": stream_id - 3})
    return dataset


def test_export_writes_every_transition_as_ros2_messages(tmp_path, capsys):
    dataset = _small_dataset(tmp_path / "run" / "dataset")
    leftover = dataset.root / ".tmp_episode_000009_1"  # a trainer's write in progress
    leftover.write_bytes(b"partial")
    out = tmp_path / "dataset.mcap"
    assert cli.main(["export-mcap", str(dataset.root), str(out), "--task", "baoding"]) == 0
    assert "2 episodes, 9 transitions" in capsys.readouterr().out
    assert leftover.exists(), "the export changed the dataset folder"

    episodes = list(read_episodes(dataset.root).values())
    rows = [(e, i) for e in episodes for i in range(len(e))]
    messages = _decoded(out)
    by_topic: dict[str, list] = {}
    for topic, message, decoded in messages:
        by_topic.setdefault(topic, []).append((message, decoded))
    assert {t: len(v) for t, v in by_topic.items()} == dict.fromkeys(
        (TOPIC_STATE, TOPIC_ACTION, TOPIC_NEXT_STATE, TOPIC_REWARD, TOPIC_DONE), len(rows))
    layout = make_task("baoding").layout.to_msg_fields()
    for n, (episode, i) in enumerate(rows):
        ns = round(float(episode.time[i]) * 1e9)
        step = int(episode.step[i])
        (m_s, state), (m_a, action) = by_topic[TOPIC_STATE][n], by_topic[TOPIC_ACTION][n]
        (m_n, nxt), (_, reward), (_, done) = (by_topic[t][n] for t in (
            TOPIC_NEXT_STATE, TOPIC_REWARD, TOPIC_DONE))
        assert {m.sequence for m in (m_s, m_a, m_n)} == {n}
        assert m_s.log_time == m_s.publish_time == ns
        assert state.header.stamp.sec * 10**9 + state.header.stamp.nanosec == ns
        assert (state.episode_id, state.step, nxt.step) == (
            episode.meta["episode_id"], step, step + 1)
        assert (action.episode_id, action.step) == (episode.meta["episode_id"], step)
        assert state.task == "baoding" and not state.stale and list(state.goal) == []
        assert [(f.name, f.start, f.size) for f in state.layout] == layout
        np.testing.assert_array_equal(np.asarray(state.state, np.float32), episode.state[i])
        np.testing.assert_array_equal(np.asarray(nxt.state, np.float32), episode.next_state[i])
        np.testing.assert_array_equal(np.asarray(action.action, np.float32), episode.action[i])
        assert action.action_dim == episode.action.shape[1]
        assert action.stats.planner == episode.meta["policy"]
        assert action.stats.model_version == episode.meta["model_version"]
        assert np.float32(reward.data) == episode.reward[i]
        assert done.data == bool(episode.done[i])
    with open(out, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        metadata = [m for m in reader.iter_metadata() if m.name == "mbrl_ros.episode"]
    assert {s.name for s in summary.schemas.values()} == {
        "mbrl_ros/msg/TaskState", "mbrl_ros/msg/PlannedAction", "std_msgs/msg/Float64",
        "std_msgs/msg/Bool"}
    assert all(s.encoding == "ros2msg" for s in summary.schemas.values())
    assert [json.loads(m.metadata["meta"]) for m in metadata] == [e.meta for e in episodes]


def test_export_refuses_an_existing_file_and_a_task_of_other_dims(tmp_path, capsys):
    dataset = _small_dataset(tmp_path / "dataset")
    out = tmp_path / "x.mcap"
    out.write_bytes(b"keep")
    assert cli.main(["export-mcap", str(dataset.root), str(out)]) == 1
    assert out.read_bytes() == b"keep"
    assert cli.main(["export-mcap", str(dataset.root), str(tmp_path / "y.mcap"),
                     "--task", "cube"]) == 1
    assert "state dims" in capsys.readouterr().err


# ---- (b) the recorder on the real stack ----------------------------------------------------

EPISODE_LENGTH = 10
OVERRIDES = f"""
/**:
  ros__parameters:
    episode_length: {EPISODE_LENGTH}
/**/dynamics_trainer:
  ros__parameters:
    ensemble:
      members: 2
      hidden: [32, 32]
    train:
      epochs: 5
      batch_size: 32
    min_transitions: 10
    max_val_loss: 1000000.0             # a 3-episode model: only the plumbing is tested
/**/mpc_planner:
  ros__parameters:
    num_samples: 50
/**/experiment:
  ros__parameters:
    random_rollouts: 3
    iterations: 1
    rollouts_per_iteration: 1
    random_rollouts_per_iteration: 0
    render_rollouts: false
/**/mcap_recorder:
  ros__parameters:
    chunk_size_kib: 64
"""


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcap_stack")
    overrides = tmp / "overrides.yaml"
    overrides.write_text(textwrap.dedent(OVERRIDES))
    cmd = [sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
           "baoding.launch.yaml", "record:=true", "respawn:=false", f"overrides:={overrides}",
           f"runs_dir:={tmp / 'runs'}", "run_name:=rec"]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).parent,
                            env={**os.environ, "ROS_LOG_DIR": str(tmp / "log")})
    print(f"stack ran {time.monotonic() - started:.0f} s")
    print(result.stdout[-20000:], result.stderr[-5000:])
    return result, tmp / "runs" / "rec"


def test_the_recording_holds_every_topic_and_every_executed_step(recorded_run):
    from mbrl_ros.nodes.mcap_recorder_node import DEFAULT_TOPICS

    result, run_dir = recorded_run
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Traceback" not in result.stdout, "a node crashed during the run"
    # the experiment waited for the recorder (wait_for_recorder, set by record:=true)
    matched = result.stdout.find("mcap_recorder has matched every publisher")
    assert 0 <= matched < result.stdout.find("it 0 episode 1 "), result.stdout[-3000:]
    files = sorted(run_dir.glob("recording_*.mcap"))
    assert len(files) == 1, files
    contents = read_mcap(files[0])
    assert contents.complete, "the recorder did not finish its file on the launch's SIGINT"
    counts = contents.topics()
    expected_channels = {t if t.startswith("/") else f"/hand/{t}" for t in DEFAULT_TOPICS}
    assert set(counts) == expected_channels  # subscribed: a channel each, with its schema
    # this run (random and MPC episodes, a training) publishes on every one of them
    assert not [t for t, n in counts.items() if n == 0], counts

    decoded = _decoded(files[0])  # every message decodes with mcap-ros2-support
    assert len(decoded) == len(contents.messages)
    last_log: dict[str, int] = {}
    actions: dict[tuple[int, int], int] = {}
    states: dict[tuple[int, int], int] = {}
    for topic, message, msg in decoded:
        assert message.log_time >= last_log.get(topic, 0)  # receive order, per topic
        last_log[topic] = message.log_time
        if hasattr(msg, "header"):
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert message.publish_time == stamp, topic  # publish_time = header stamp
        if topic == "/hand/planned_action":
            key = (msg.episode_id, msg.step)
            actions[key] = actions.get(key, 0) + 1
        elif topic == "/hand/task_state":
            key = (msg.episode_id, msg.step)
            states[key] = states.get(key, 0) + 1

    rows = read_metrics(run_dir / "metrics.csv")
    assert len(rows) == 4 and {r["policy"] for r in rows} == {"random", "mpc"}
    stored = {(e.meta["episode_id"], int(k))
              for e in read_episodes(run_dir / "dataset").values() for k in e.step}
    for row in rows:
        episode, steps = int(row["episode"]), int(row["steps"])
        executed = {(episode, k) for k in range(steps)}
        # one command per executed step, one state per step reached (0..steps)
        assert {k for k in actions if k[0] == episode} == executed, row
        assert {k for k in states if k[0] == episode} == {(episode, k)
                                                          for k in range(steps + 1)}, row
        # and the trainer stored exactly those transitions
        assert {k for k in stored if k[0] == episode} == executed, row
    experiment_steps = sum(int(r["steps"]) for r in rows)
    assert int(rows[-1]["transitions"]) == experiment_steps == sum(
        1 for k in actions if k[0] in {int(r["episode"]) for r in rows})
    repeats = {k: n for k, n in actions.items() if n > 1}
    print(f"{len(contents.messages)} messages; planned_action {sum(actions.values())} "
          f"({len(actions)} steps, re-sent {repeats}), task_state {sum(states.values())} "
          f"({len(states)} steps); executed {experiment_steps} in the experiment's episodes")


# ---- (c) SIGKILL ----------------------------------------------------------------------------

def test_a_killed_recorder_leaves_every_closed_chunk_readable(tmp_path):
    """Kill -9 mid-recording. Lost: the open chunk (what arrived since the last chunk was
    closed: at most chunk_interval_s of messages, plus the timer's lateness on a busy
    machine) and the summary section (indexes, statistics, footer). Everything before is
    read back, without a gap, and recover_mcap turns it into a complete file."""
    from rclpy.qos import QoSProfile

    from mbrl_ros.msg import TaskState

    interval = 0.25
    proc = start_process([str(RECORDER), "--ros-args", "-r", "__ns:=/hand",
                          "-p", f"output_dir:={tmp_path}", "-p", "topics:=[task_state]",
                          "-p", f"chunk_interval_s:={interval}", "-p", "chunk_size_kib:=32"])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    published: list[int] = []  # wall time (ns) of each published step, index = step
    stop = threading.Event()
    try:
        with spinning_node("mcap_kill_publisher") as node:
            pub = node.create_publisher(TaskState, "/hand/task_state", QoSProfile(depth=1000))
            wait_for(lambda: pub.get_subscription_count() > 0, 60, "the recorder to subscribe")

            def publish() -> None:
                while not stop.is_set():
                    now = time.time_ns()
                    msg = TaskState(task="baoding", episode_id=1, step=len(published),
                                    state=[float(len(published))] * 60)
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10**9)
                    pub.publish(msg)
                    published.append(now)
                    stop.wait(0.004)  # the publishing rate, about 200 Hz

            thread = threading.Thread(target=publish, daemon=True)
            thread.start()
            path = wait_for(lambda: next(tmp_path.glob("recording_*.mcap"), None), 30,
                            "the recording file")
            before = wait_for(lambda: (lambda c: c if len(c.messages) >= 400 else None)(
                read_mcap(path)), 120, "400 messages in closed chunks on disk")
            # kill while the open chunk fills: 20 more published (0.1 s < chunk_interval_s)
            on_disk = int(next(d for _, d in before.decoded()).step) + len(before.messages)
            wait_for(lambda: len(published) > on_disk + 20, 10, "20 more messages")
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = time.time_ns()
            proc.wait(10)
            # go on publishing a little: nobody records that
            wait_for(lambda: len(published) > 0 and published[-1] > killed_at + 100_000_000,
                     10, "publishing past the kill")
            stop.set()
            thread.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    after = read_mcap(path)
    assert not after.complete  # no summary, no footer
    steps = [int(d.step) for _, d in after.decoded()]
    first = steps[0]
    assert first < 50 and steps == list(range(first, first + len(steps)))  # no gap
    assert len(steps) >= len(before.messages)  # what was on disk stays readable
    last_received = after.messages[-1].message.log_time
    lost = len(published) - (first + len(steps))
    assert lost > 0  # the open chunk and what came after the kill
    # everything received more than chunk_interval_s (+ slack for a busy machine) before the
    # kill is in the file
    assert killed_at - last_received < (interval + 2.0) * 1e9, (killed_at - last_received) / 1e9
    print(f"kept steps {first}..{steps[-1]} ({len(steps)}), lost {lost} published after "
          f"{(killed_at - last_received) / 1e6:.0f} ms before the kill; unreadable tail "
          f"{after.lost_tail_bytes} bytes")

    recovered = tmp_path / "recovered.mcap"
    assert cli.main(["mcap-recover", str(path), str(recovered)]) == 0
    messages = _decoded(recovered)  # a complete file: mcap's seeking reader and the decoder
    assert [int(d.step) for _, _, d in messages] == steps
    assert [m.log_time for _, m, _ in messages] == [m.message.log_time for m in after.messages]
    assert read_mcap(recovered).complete
