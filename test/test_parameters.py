"""ParameterSet on a real rclpy node: bad start-up and runtime values are refused, logged and
reported to the node's real Diagnostics; the node keeps its defaults / current values."""

from __future__ import annotations

import itertools
import math

import pytest
from rclpy.parameter import Parameter

from mbrl_ros.nodes.diagnostics import Diagnostics
from mbrl_ros.nodes.parameters import PROBLEM_KIND, Param, ParameterSet

pytestmark = pytest.mark.ros

SCHEMA = [
    Param("mode", "lockstep", "mode", choices=("lockstep", "realtime"), read_only=True),
    Param("num_samples", 700, "N", 1, 100000),
    Param("gamma", 20.0, "temperature", 0.0, 1e6),
    Param("frame_skip", 40, "physics steps", 1, 1000, read_only=True),
    Param("joints", ["a", "b", "c"], "joint order", read_only=True),
    Param("enabled", True, "a switch"),
]
_names = itertools.count()


def _joints_check(values) -> str | None:
    if sorted(values["joints"]) != ["a", "b", "c"]:
        return f"joints must be a permutation of a, b, c, got {values['joints']}"
    return None


@pytest.fixture(scope="module")
def context():
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context, *overrides: str):
    from rclpy.node import Node

    args = ["--ros-args"] + [a for o in overrides for a in ("-p", o)] if overrides else None
    return Node(f"params_{next(_names)}", context=context, cli_args=args)


def _values(node) -> dict:
    return {p.name: node.get_parameter(p.name).value for p in SCHEMA}


def _plain(value):
    return list(value) if not isinstance(value, (str, bool, int, float)) else value


def test_bad_start_up_values_fall_back_to_defaults_and_reach_diagnostics(context):
    node = _node(context, "num_samples:=abc", "gamma:=3", "frame_skip:=2.5", "mode:=warp",
                 "joints:=[a,x]", "enabled:=1")
    params = ParameterSet(node, SCHEMA, checks=[_joints_check])
    defaults = {p.name: p.default for p in SCHEMA}
    assert params.snapshot() == defaults
    assert {k: _plain(v) for k, v in _values(node).items()} == defaults  # what ros2 param sees
    assert all(node.describe_parameter(p.name).read_only == p.read_only for p in SCHEMA)
    messages = list(params.rejections)
    assert len(messages) == 6
    for name in ("num_samples", "gamma", "frame_skip", "mode", "joints", "enabled"):
        assert any(name in m and "using default" in m for m in messages), (name, messages)
    assert any("expecting type 'INTEGER'" in m for m in messages)  # the reason is named

    diagnostics = Diagnostics(node, lambda: (0, "ok", {}))
    assert diagnostics.problems == {}  # start-up rejections wait for report_to
    params.report_to(diagnostics)
    assert diagnostics.problems == {PROBLEM_KIND: 6}
    assert "joints" in diagnostics.last_problem
    node.destroy_node()


def test_a_failed_cross_check_reverts_only_the_value_that_breaks_it(context):
    node = _node(context, "joints:=[c,x]", "num_samples:=50", "mode:=realtime")
    params = ParameterSet(node, SCHEMA, checks=[_joints_check])
    assert params["joints"] == ["a", "b", "c"]
    assert params["num_samples"] == 50 and params["mode"] == "realtime"
    assert node.get_parameter("mode").value == "realtime"
    assert len(params.rejections) == 1 and "joints=['c', 'x']" in params.rejections[0]
    node.destroy_node()


def test_good_start_up_values_are_taken_and_nothing_is_reported(context):
    node = _node(context, "joints:=[c,a,b]", "gamma:=0.5", "frame_skip:=10")
    params = ParameterSet(node, SCHEMA, checks=[_joints_check])
    assert (params["joints"], params["gamma"], params["frame_skip"]) == (["c", "a", "b"], 0.5, 10)
    assert not params.rejections
    diagnostics = Diagnostics(node, lambda: (0, "ok", {}))
    params.report_to(diagnostics)
    assert diagnostics.problems == {}
    node.destroy_node()


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("num_samples", "abc", "must be of type int"),
    ("num_samples", 2.5, "must be of type int"),
    ("num_samples", 0, "below its minimum"),
    ("num_samples", 10**7, "above its maximum"),
    ("gamma", math.nan, "finite"),
    ("gamma", math.inf, "finite"),
    ("gamma", True, "finite number"),
    ("enabled", "yes", "must be of type bool"),
    ("mode", "realtime", "read-only"),
    ("frame_skip", 10, "read-only"),
    ("bogus", 1, "unknown parameter bogus"),
])
def test_bad_runtime_values_are_refused_reported_once_and_change_nothing(context, name, value,
                                                                        reason):
    node = _node(context)
    changes: list = []
    params = ParameterSet(node, SCHEMA, checks=[_joints_check], on_change=changes.append)
    diagnostics = Diagnostics(node, lambda: (0, "ok", {}))
    params.report_to(diagnostics)
    before, node_before = params.snapshot(), _values(node)

    if name == "bogus":
        from rclpy.exceptions import ParameterNotDeclaredException

        with pytest.raises(ParameterNotDeclaredException):  # the service turns it into a reason
            node.set_parameters([Parameter(name, value=value)])
    else:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and result.reason

    assert diagnostics.problems == {PROBLEM_KIND: 1}, "not reported exactly once"
    assert reason in diagnostics.last_problem
    assert params.snapshot() == before and _values(node) == node_before and not changes
    node.destroy_node()


def test_a_runtime_cross_check_failure_is_refused_with_its_reason(context):
    node = _node(context)
    check = [lambda v: None if v["num_samples"] >= v["gamma"] else "num_samples < gamma"]
    params = ParameterSet(node, SCHEMA, checks=check)
    diagnostics = Diagnostics(node, lambda: (0, "ok", {}))
    params.report_to(diagnostics)
    result = node.set_parameters_atomically([Parameter("gamma", value=5000.0)])
    assert not result.successful and result.reason == "num_samples < gamma"
    assert diagnostics.problems == {PROBLEM_KIND: 1} and params["gamma"] == 20.0
    node.destroy_node()


def test_good_runtime_values_apply_and_runtime_rejections_before_report_to_are_kept(context):
    node = _node(context)
    changes: list = []
    params = ParameterSet(node, SCHEMA, checks=[_joints_check], on_change=changes.append)
    assert not node.set_parameters([Parameter("num_samples", value=-1)])[0].successful
    result = node.set_parameters([Parameter("num_samples", value=100),
                                  Parameter("gamma", value=1.5)])
    assert all(r.successful for r in result)
    assert params["num_samples"] == 100 and params["gamma"] == 1.5
    assert changes[-1]["gamma"] == 1.5
    diagnostics = Diagnostics(node, lambda: (0, "ok", {}))
    params.report_to(diagnostics)
    assert diagnostics.problems == {PROBLEM_KIND: 1}
    assert "num_samples=-1 is below its minimum" in diagnostics.last_problem
    node.destroy_node()
