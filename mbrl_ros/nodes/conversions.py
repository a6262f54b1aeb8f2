"""Message <-> numpy conversions shared by the nodes (no node state here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Twist
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from visualization_msgs.msg import Marker

NS_PER_S = 1_000_000_000


def time_from_ns(ns: int) -> Time:
    return Time(sec=int(ns // NS_PER_S), nanosec=int(ns % NS_PER_S))


def ns_from_time(stamp: Time) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def schedule_goals(msg, task: str, goal_dim: int, frame: str = "") -> np.ndarray:
    """The goal rows ``[T, goal_dim]`` of a ``GoalSchedule``; ValueError naming the problem.

    ``task`` empty: the schedule's task is not checked. ``frame``: the frame this node's
    task gives its goals in; a schedule stamped with another ``header.frame_id`` is refused
    (an empty one is taken as the task's).
    """
    if task and msg.task and msg.task != task:
        raise ValueError(f"schedule for task '{msg.task}', this is '{task}'")
    if frame and msg.header.frame_id and msg.header.frame_id != frame:
        raise ValueError(f"schedule goals in frame '{msg.header.frame_id}', this task gives "
                         f"them in '{frame}'")
    goals = np.asarray(msg.goals, dtype=np.float64)
    if msg.goal_dim != goal_dim or goals.size == 0 or goals.size % goal_dim:
        raise ValueError(f"goal_dim {msg.goal_dim} with {goals.size} values; the task needs "
                         f"rows of {goal_dim}")
    if not np.all(np.isfinite(goals)):
        raise ValueError("non-finite goals")
    return goals.reshape(-1, goal_dim)


def pose(pos: Sequence[float], quat_wxyz: Sequence[float]) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (
        float(v) for v in quat_wxyz)
    return p


def twist(linear: Sequence[float], angular: Sequence[float]) -> Twist:
    t = Twist()
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in linear)
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in angular)
    return t


_MARKER_TYPES = {"sphere": Marker.SPHERE, "box": Marker.CUBE, "cylinder": Marker.CYLINDER}


def marker(primitive, marker_id: int, frame_id: str, stamp: Time) -> Marker:
    """A ``visualization_msgs/Marker`` for a ``mbrl_ros.sim.GeomPrimitive``."""
    m = Marker()
    m.header.frame_id, m.header.stamp = frame_id, stamp
    m.ns, m.id = primitive.role, marker_id
    m.type = _MARKER_TYPES.get(primitive.shape, Marker.CUBE)
    m.action = Marker.ADD
    m.pose = pose(primitive.pos, primitive.quat)
    m.scale.x, m.scale.y, m.scale.z = (float(v) for v in primitive.size)
    m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in primitive.rgba)
    m.text = primitive.name
    return m


#: History depth of topics whose every sample is recorded (task_state, planned_action): a
#: reliable writer can only resend a sample lost on the way (a full socket buffer on a busy
#: machine) while it is still in its history, so keep a few seconds of the control stream.
RECORDED_QOS_DEPTH = 200

#: QoS of the latched topics (goal_schedule, model_update): a late subscriber gets the newest.
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)

#: QoS of a goal_schedule subscriber: latched like the publisher, but a callback thread that
#: falls behind (short lockstep episodes on a busy machine) keeps every schedule instead of
#: only the newest (depth does not affect QoS compatibility).
SCHEDULE_SUB_QOS = QoSProfile(depth=20, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                              reliability=ReliabilityPolicy.RELIABLE)


def joint_positions(msg, joints: Sequence[str], ignore_extra: bool = False) -> np.ndarray:
    """A ``JointState``'s positions in ``joints`` order, whatever order it lists them in;
    ValueError naming the problem (sizes, unknown/missing/duplicate names, NaN/Inf).
    ``ignore_extra``: names outside ``joints`` (e.g. a robot arm's) are ignored."""
    n = len(msg.name)
    if len(msg.position) != n or len(msg.velocity) not in (0, n) or len(msg.effort) not in (0, n):
        raise ValueError(f"{n} names but {len(msg.position)} positions, "
                         f"{len(msg.velocity)} velocities, {len(msg.effort)} efforts")
    index = {name: i for i, name in enumerate(msg.name)}
    if len(index) != n:
        dupes = sorted(name for name, count in Counter(msg.name).items() if count > 1)
        raise ValueError(f"duplicate joint names: {dupes}")
    unknown = [] if ignore_extra else sorted(set(index) - set(joints))
    missing = [name for name in joints if name not in index]
    if unknown or missing:
        raise ValueError(f"joint names do not match the 'joints' parameter: unknown "
                         f"{unknown}, missing {missing}")
    order = np.array([index[name] for name in joints])
    q = np.asarray(msg.position, dtype=np.float64)[order]
    bad = [joints[i] for i in np.flatnonzero(~np.isfinite(q))]
    if len(msg.velocity):
        v = np.asarray(msg.velocity, dtype=np.float64)[order]
        bad += [f"{joints[i]} (velocity)" for i in np.flatnonzero(~np.isfinite(v))]
    if bad:
        raise ValueError(f"non-finite values of {bad}")
    return q
