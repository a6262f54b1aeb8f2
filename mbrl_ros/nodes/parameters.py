"""ROS parameters declared from a schema: description, range or choices, validation.

Every node lists its parameters as ``Param`` entries. ``ParameterSet`` declares them with
proper descriptors (so ``ros2 param describe`` and rqt show ranges), rejects out-of-range or
wrong-type values given at start-up (logged; the default is kept and the node starts) and
at run time (the set request fails with a reason; the node keeps its current value), and
keeps a plain-dict snapshot that the node's own code reads.

Every rejection is also a diagnostics problem (kind ``parameter``): start-up ones happen
before the node has its ``Diagnostics``, so they are kept and handed over by
``report_to(diagnostics)``; later ones go there at once.
"""

from __future__ import annotations

import array
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

Check = Callable[[Mapping[str, Any]], str | None]

#: Diagnostics kind of every parameter rejection (the key on /diagnostics: rejected_parameter).
PROBLEM_KIND = "parameter"


class ProblemSink(Protocol):
    """Where rejections are reported: ``mbrl_ros.nodes.diagnostics.Diagnostics``."""

    def problem(self, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class Param:
    """One declared parameter. ``low``/``high`` bound numbers (inclusive); ``choices``
    restricts strings; ``read_only`` ones can only be set at start-up."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.low is not None and self.high is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(
                    from_value=int(self.low), to_value=int(self.high), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        return desc

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is unacceptable, or None. (rcl checks types and ranges as well;
        this also covers NaN, choices and the start-up path.)"""
        value = plain(value)
        if isinstance(self.default, float) and isinstance(value, (int, float)):
            if isinstance(value, bool) or not math.isfinite(float(value)):
                return f"{self.name} must be a finite number, got {value!r}"
        elif type(value) is not type(self.default):
            return (f"{self.name} must be of type {type(self.default).__name__}, "
                    f"got {type(value).__name__} {value!r}")
        if self.low is not None and isinstance(value, (int, float)) and value < self.low:
            return f"{self.name}={value!r} is below its minimum {self.low}"
        if self.high is not None and isinstance(value, (int, float)) and value > self.high:
            return f"{self.name}={value!r} is above its maximum {self.high}"
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if isinstance(value, list) and any(
            isinstance(v, float) and not math.isfinite(v) for v in value
        ):
            return f"{self.name} has non-finite entries"
        return None


def plain(value: Any) -> Any:
    """rclpy hands numeric arrays over as ``array.array``; the schema speaks lists."""
    return value.tolist() if isinstance(value, array.array) else value


class ParameterSet:
    """Declares ``params`` on ``node`` and tracks accepted values in ``values``.

    A rejected start-up value falls back to its default (a cross-check failure reverts the
    one value whose default makes the set consistent, else all of them); a rejected runtime
    change fails with a reason. Either way the rejection is logged and reported as a
    diagnostics problem (see ``report_to``); ``rejections`` keeps the recent messages.
    """

    def __init__(self, node: Node, params: Iterable[Param], checks: Iterable[Check] = (),
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._node = node
        self._schema = {p.name: p for p in params}
        self._checks = list(checks)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._sink: ProblemSink | None = None
        self._unreported: list[str] = []
        self._screened = threading.local()  # pre-set verdict, read by the on-set callback
        self.rejections: deque[str] = deque(maxlen=100)
        self.values: dict[str, Any] = {}
        for p in self._schema.values():
            self.values[p.name] = self._declare(p)
        self._settle_cross_checks()
        for p in self._schema.values():
            if p.read_only:
                self._make_read_only(p)
        # Pre-set callbacks run before rclpy's own type/range/read-only checks, so every
        # refused change is reported, whoever refuses it; the on-set one decides the rest.
        node.add_pre_set_parameters_callback(self._screen)
        node.add_on_set_parameters_callback(self._validate)

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self.values[name]

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all values (read once per plan/tick)."""
        with self._lock:
            return dict(self.values)

    def report_to(self, sink: ProblemSink) -> None:
        """Report rejections to ``sink`` (the node's Diagnostics) from now on, starting with
        the start-up ones kept until it existed."""
        with self._lock:
            self._sink = sink
            pending, self._unreported = self._unreported, []
        for message in pending:
            sink.problem(PROBLEM_KIND, message)

    # ----- start-up -----------------------------------------------------------------------
    def _declare(self, p: Param) -> Any:
        # Declared writable, so that a rejected value can still be replaced by the default;
        # read-only parameters are locked once every value is settled.
        desc = p.descriptor()
        desc.read_only = False
        try:
            value = plain(self._node.declare_parameter(p.name, p.default, desc).value)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            self._report(f"parameter {p.name} rejected at start-up ({exc}); using default "
                         f"{p.default!r}")
            return plain(self._node.declare_parameter(
                p.name, p.default, desc, ignore_override=True).value)
        problem = p.problem(value)
        if problem:
            self._report(f"parameter rejected at start-up: {problem}; using default "
                         f"{p.default!r}")
            self._restore_default(p)
            return p.default
        return value

    def _settle_cross_checks(self) -> None:
        problem = self._cross_check(self.values)
        if not problem:
            return
        for p in self._schema.values():
            if self.values[p.name] != p.default and self._cross_check(
                    {**self.values, p.name: p.default}) is None:
                self._report(f"parameter {p.name}={self.values[p.name]!r} rejected at start-up: "
                             f"{problem}; using default {p.default!r}")
                self._restore_default(p)
                return
        self._report(f"start-up parameters inconsistent: {problem}; using defaults")
        for p in self._schema.values():
            if self.values[p.name] != p.default:
                self._restore_default(p)

    def _restore_default(self, p: Param) -> None:
        result = self._node.set_parameters([Parameter(p.name, value=p.default)])[0]
        if not result.successful:  # the schema's own default does not fit its descriptor
            raise ValueError(f"default of parameter {p.name} refused: {result.reason}")
        self.values[p.name] = p.default

    def _make_read_only(self, p: Param) -> None:
        desc = p.descriptor()
        desc.type = self._node.describe_parameter(p.name).type
        self._node.set_descriptor(p.name, desc)

    # ----- run time -----------------------------------------------------------------------
    def _proposal(self, params: list[Parameter], check_read_only: bool
                  ) -> tuple[str | None, dict[str, Any]]:
        """(why ``params`` cannot be set, or None; the values they would give)."""
        with self._lock:
            proposed = dict(self.values)
        for param in params:
            spec = self._schema.get(param.name)
            if spec is None:
                if not self._node.has_parameter(param.name):
                    return f"unknown parameter {param.name}", proposed
                continue  # declared outside the schema (use_sim_time): rclpy checks it
            if check_read_only and spec.read_only:
                return (f"{spec.name} is read-only (set it at start-up), refused "
                        f"{plain(param.value)!r}"), proposed
            problem = spec.problem(param.value)
            if problem:
                return problem, proposed
            proposed[param.name] = plain(param.value)
        return self._cross_check(proposed), proposed

    def _screen(self, params: list[Parameter]) -> list[Parameter]:
        reason, _ = self._proposal(params, check_read_only=True)
        self._screened.verdict = ([p.name for p in params], reason)
        if reason:
            self._report(f"parameter change rejected: {reason}")
        return params

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        reason, proposed = self._proposal(params, check_read_only=False)
        screened = getattr(self._screened, "verdict", None)
        self._screened.verdict = None
        if reason:
            if screened != ([p.name for p in params], reason):
                self._report(f"parameter change rejected: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        with self._lock:
            self.values = proposed
        if self._on_change is not None:
            self._on_change(dict(proposed))
        return SetParametersResult(successful=True)

    def _cross_check(self, values: Mapping[str, Any]) -> str | None:
        for check in self._checks:
            problem = check(values)
            if problem:
                return problem
        return None

    def _report(self, message: str) -> None:
        with self._lock:
            self.rejections.append(message)
            sink = self._sink
            if sink is None:
                self._unreported.append(message)
        if sink is None:
            self._node.get_logger().error(message)
        else:
            sink.problem(PROBLEM_KIND, message)
