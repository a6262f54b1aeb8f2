"""The trainer's episode dataset (``dataset/episode_*.npz``) as an MCAP file of ROS 2 messages.

    mbrl-ros export-mcap runs/demo/dataset demo_dataset.mcap [--task baoding]

Each stored transition ``(s_k, a_k, s_k+1, r_k, done_k)`` of a stored episode becomes five
messages, all with the same log and publish time (the transition's ``time``: the ROS stamp
of state k, in ns) and the same MCAP ``sequence`` number (the transition's index in the
export, 0, 1, ..., in dataset order), on these topics:

- ``/dataset/task_state`` (``mbrl_ros/msg/TaskState``): state k; ``episode_id`` is the
  stream's episode id (meta ``episode_id``), ``step`` k, ``header.stamp`` the transition's
  time, ``layout`` the task's fields (when the task is known), ``goal`` empty (the dataset
  keeps no goals);
- ``/dataset/planned_action`` (``mbrl_ros/msg/PlannedAction``): action k in [-1, 1]
  (``action``, ``action_dim``), ``stats.planner`` the episode's policy and
  ``stats.model_version`` its model version (meta ``policy``, ``model_version``: the most
  common ones of the episode); joint targets and plans are not in the dataset (empty);
- ``/dataset/next_task_state`` (``mbrl_ros/msg/TaskState``): state k + 1 (step k + 1,
  stamped like the others);
- ``/dataset/reward`` (``std_msgs/msg/Float64``) and ``/dataset/done`` (``std_msgs/msg/Bool``).

Each episode file also gives one MCAP metadata record ``mbrl_ros.episode`` (its dataset
id, file name and meta as JSON), and the export one ``mbrl_ros.dataset`` record. The
dataset is only read (``read_episodes``): exporting while a trainer writes it is safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mcap_ros2.writer import Writer as Ros2Writer

from mbrl_ros.core.data.dataset import read_episodes
from mbrl_ros.results.mcap_writer import COMPRESSIONS, message_definition

TOPIC_STATE = "/dataset/task_state"
TOPIC_ACTION = "/dataset/planned_action"
TOPIC_NEXT_STATE = "/dataset/next_task_state"
TOPIC_REWARD = "/dataset/reward"
TOPIC_DONE = "/dataset/done"
TYPES = {TOPIC_STATE: "mbrl_ros/msg/TaskState", TOPIC_ACTION: "mbrl_ros/msg/PlannedAction",
         TOPIC_NEXT_STATE: "mbrl_ros/msg/TaskState", TOPIC_REWARD: "std_msgs/msg/Float64",
         TOPIC_DONE: "std_msgs/msg/Bool"}


@dataclass
class ExportSummary:
    """What an export wrote: episodes, transitions, messages per topic, files skipped."""

    path: Path
    episodes: int = 0
    transitions: int = 0
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    task: str = ""
    skipped: list[str] = field(default_factory=list)


def _task_from_run(dataset_dir: Path) -> str:
    """The task named in the run's config.yaml (``<run>/config.yaml`` beside ``dataset/``)."""
    config = dataset_dir.parent / "config.yaml"
    try:
        data = yaml.safe_load(config.read_text())
        return str(data["experiment"]["task"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return ""


def _layout(task: str, state_dim: int) -> list[dict[str, Any]]:
    if not task:
        return []
    from mbrl_ros.core.tasks import make_task

    layout = make_task(task).layout
    if layout.dim != state_dim:
        raise ValueError(f"task {task!r} has {layout.dim} state dims, the dataset {state_dim}")
    return [{"name": n, "start": s, "size": z} for n, s, z in layout.to_msg_fields()]


def _stamp(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def export_dataset(dataset_dir: str | Path, out: str | Path, task: str | None = None,
                   compression: str = "zstd") -> ExportSummary:
    """Write every transition of the episode dataset at ``dataset_dir`` to the new MCAP file
    ``out`` (see the module docstring for topics and messages). ``task`` (default: the one in
    the run's ``config.yaml``, if any) fills the states' ``layout``; ``""`` leaves it empty."""
    dataset_dir, out = Path(dataset_dir), Path(out)
    summary = ExportSummary(path=out)
    episodes = read_episodes(dataset_dir, on_error=lambda p, e: summary.skipped.append(
        f"{p.name}: {e}"))
    summary.task = _task_from_run(dataset_dir) if task is None else task
    layout = (_layout(summary.task, next(iter(episodes.values())).state.shape[1]) if episodes
              else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "xb") as f:
        writer = Ros2Writer(f, compression=COMPRESSIONS[compression])
        schemas = {topic: writer.register_msgdef(name, message_definition(name))
                   for topic, name in TYPES.items()}
        writer.add_metadata("mbrl_ros.dataset", {
            "source": str(dataset_dir.resolve()), "task": summary.task,
            "episodes": str(len(episodes)),
            "transitions": str(sum(len(e) for e in episodes.values())),
            "topics": json.dumps(TYPES)})
        n = 0
        for dataset_id, episode in episodes.items():
            meta = episode.meta
            stream_id = int(meta.get("episode_id", dataset_id))
            writer.add_metadata("mbrl_ros.episode", {
                "dataset_id": str(dataset_id),
                "file": f"episode_{dataset_id:06d}.npz",
                "meta": json.dumps(meta, sort_keys=True)})
            stats = {"planner": str(meta.get("policy", "")),
                     "model_version": int(meta.get("model_version", 0))}
            for i in range(len(episode)):
                step = int(episode.step[i])
                ns = max(0, round(float(episode.time[i]) * 1e9))
                header = {"stamp": _stamp(ns), "frame_id": "world"}

                def state(vector, k, header=header, stream_id=stream_id):
                    return {"header": header, "task": summary.task, "episode_id": stream_id,
                            "step": k, "state": [float(x) for x in vector], "layout": layout,
                            "goal": [], "stale": False, "age": 0.0}

                action = [float(x) for x in episode.action[i]]
                messages = {
                    TOPIC_STATE: state(episode.state[i], step),
                    TOPIC_ACTION: {"header": header, "episode_id": stream_id, "step": step,
                                   "joint_names": [], "action": action, "joint_targets": [],
                                   "horizon": 0, "action_dim": len(action),
                                   "planned_actions": [], "object_names": [],
                                   "predicted_object_positions": [], "stats": stats},
                    TOPIC_NEXT_STATE: state(episode.next_state[i], step + 1),
                    TOPIC_REWARD: {"data": float(episode.reward[i])},
                    TOPIC_DONE: {"data": bool(episode.done[i])},
                }
                for topic, message in messages.items():
                    writer.write_message(topic, schemas[topic], message, log_time=ns,
                                         publish_time=ns, sequence=n)
                    summary.messages[topic] += 1
                n += 1
            summary.episodes += 1
        writer.finish()
    summary.transitions = n
    return summary
