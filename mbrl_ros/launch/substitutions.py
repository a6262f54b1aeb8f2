"""Launch substitutions: ``$(var x)``, ``$(env X [default])``, ``$(find-pkg-share p)`` ...

The syntax is that of ``ros2 launch`` (launch 3.4.3's ``frontend/grammar.lark``): a
substitution is ``$(`` NAME, then arguments each preceded by exactly one space, then ``)``;
an argument is unquoted text and substitutions run together (no spaces, quotes or
parentheses unless backslash-escaped), or a whole ``'...'`` / ``"..."`` string that may hold
spaces and substitutions; ``\\$(`` is a literal ``$(``; in every text piece ``\\x`` becomes
``x``. A nested substitution is one argument whatever its result holds (spaces included).

Only the substitutions in ``SUPPORTED`` are understood, each with ``ros2 launch``'s meaning
and argument count. Any other one is an error that names it when the file is read (as
``ros2 launch`` rejects a file with an unknown substitution anywhere in it), so a launch file
never half-works; ``$(optenv ...)`` (ROS 1) is unknown to ``ros2 launch`` too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mbrl_ros.launch import packages


class SubstitutionError(ValueError):
    """A substitution is unknown, malformed or cannot be resolved."""


@dataclass
class Substitution:
    """``$(name arg ...)``; each argument is a template (text and nested substitutions)."""

    name: str
    args: list[list[str | Substitution]]


Template = list  # list[str | Substitution]: text pieces and substitutions, in order


@dataclass
class Context:
    """What substitutions see, shared by a launch file and every file it includes, as in
    ``ros2 launch`` (an ``include`` does not open a scope): launch configurations (``arg``,
    ``let``, include and command-line arguments), the environment (``os.environ`` plus
    ``set_env``), and the file being read, which ``ros2 launch`` also leaves at the last
    included file once an include is done."""

    variables: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    set_env: dict[str, str] = field(default_factory=dict)
    current_file: Path = field(default_factory=Path)


def _var(args: list[str], ctx: Context) -> str:
    if args[0] in ctx.variables:
        return ctx.variables[args[0]]
    if len(args) == 2:
        return args[1]
    raise SubstitutionError(f"$(var {args[0]}): no launch argument or 'let' named '{args[0]}'")


def _env(args: list[str], ctx: Context) -> str:
    if args[0] in ctx.environment:
        return ctx.environment[args[0]]
    if len(args) == 2:
        return args[1]
    raise SubstitutionError(f"$(env {args[0]}): environment variable not set and no default")


def _pkg_share(args: list[str], ctx: Context) -> str:
    return str(packages.package_share(args[0]))


def _pkg_prefix(args: list[str], ctx: Context) -> str:
    return str(packages.package_prefix(args[0]))


def _dirname(args: list[str], ctx: Context) -> str:
    return os.path.dirname(ctx.current_file)


def _filename(args: list[str], ctx: Context) -> str:
    return str(ctx.current_file)


# name -> (function, fewest arguments, most arguments)
SUPPORTED: dict[str, tuple[Callable[[list[str], Context], str], int, int]] = {
    "var": (_var, 1, 2),
    "env": (_env, 1, 2),
    "find-pkg-share": (_pkg_share, 1, 1),
    "find-pkg-prefix": (_pkg_prefix, 1, 1),
    "dirname": (_dirname, 0, 0),
    "filename": (_filename, 0, 0),
}
# What ros2 launch (launch 3.4.3, launch_ros 0.26.6) knows beyond SUPPORTED: named as such.
UPSTREAM_ONLY = frozenset({
    "if", "not", "and", "or", "any", "all", "equals", "not-equals", "eval", "command",
    "find-exec", "file-content", "anon", "launch_log_dir", "log_dir", "exec-in-pkg", "param",
})

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_ESCAPED = re.compile(r"\\(.)")


def unescape(text: str) -> str:
    """``\\x`` -> ``x``, as ros2 launch treats every text piece (and ``arg`` names)."""
    return _ESCAPED.sub(r"\1", text)


class _Parser:
    """Recursive descent over ros2 launch's substitution grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, why: str) -> SubstitutionError:
        return SubstitutionError(f"bad substitution syntax in '{self.text}' at {self.i}: {why}")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.text[j] if j < len(self.text) else ""

    def escaped(self) -> bool:
        return self.i > 0 and self.text[self.i - 1] == "\\"

    def at_substitution(self) -> bool:
        return self.peek() == "$" and self.peek(1) == "(" and not self.escaped()

    def literal_ok(self, mode: str) -> bool:
        """May the character at ``i`` be text in ``mode``: top (outside any substitution),
        arg (an unquoted argument), or a quote character (``'``/``"``, inside that quoted
        string), or ``'arg`` / ``"arg`` (an argument of a substitution inside quotes)?"""
        c = self.peek()
        if not c:
            return False
        if c == "$":
            return self.peek(1) != "(" or self.escaped()
        if mode == "top":
            return True
        quote = mode[0] if mode[0] in "'\"" else ""
        if mode in ("'", '"'):
            return c != quote or self.escaped()
        if c == " ":
            return False
        if c in "()":
            return self.escaped()
        if c in "'\"" and (mode == "arg" or c == quote):
            return self.escaped()
        return True

    def text_run(self, mode: str) -> str:
        start = self.i
        while self.literal_ok(mode):
            self.i += 1
        return self.text[start:self.i]

    def template(self) -> Template:
        out: Template = []
        while self.i < len(self.text):
            if self.at_substitution():
                out.append(self.substitution(""))
            else:
                run = self.text_run("top")
                if not run:
                    raise self.fail("unexpected character")
                out.append(unescape(run))
        return out

    def substitution(self, quote: str) -> Substitution:
        self.i += 2  # "$("
        match = _IDENTIFIER.match(self.text, self.i)
        if not match:
            raise self.fail("expected a substitution name after '$('")
        name = match.group()
        self.i = match.end()
        args: list[Template] = []
        if self.peek() == " ":
            while True:
                self.i += 1  # the one space before each argument
                args.append(self.value(quote))
                if self.peek() != " ":
                    break
        if self.peek() != ")":
            raise self.fail(f"expected ')' to close '$({name}' (arguments are separated by one "
                            f"space; quote an argument holding spaces)")
        self.i += 1
        _check_known(name, len(args))
        return Substitution(name, args)

    def value(self, quote: str) -> Template:
        if not quote and self.peek() in ("'", '"'):
            return self.quoted(self.peek())
        mode = quote + "arg" if quote else "arg"
        out: Template = []
        while True:
            if self.at_substitution():
                out.append(self.substitution(quote))
                continue
            run = self.text_run(mode)
            if not run:
                break
            out.append(unescape(run))
        if not out:
            raise self.fail("empty substitution argument")
        return out

    def quoted(self, quote: str) -> Template:
        self.i += 1
        out: Template = []
        while True:
            if self.at_substitution():
                out.append(self.substitution(quote))
            elif self.peek() == quote and not self.escaped():
                self.i += 1
                return out
            elif not self.peek():
                raise self.fail(f"unclosed {quote}")
            else:
                out.append(unescape(self.text_run(quote)))


def _check_known(name: str, count: int) -> None:
    if name not in SUPPORTED:
        supported = ", ".join(SUPPORTED)
        if name in UPSTREAM_ONLY:
            raise SubstitutionError(
                f"substitution '$({name} ...)' is not supported by mbrl-ros launch "
                f"(supported: {supported})")
        hint = " (ROS 1; use $(env NAME default))" if name == "optenv" else ""
        raise SubstitutionError(f"Unknown substitution: {name}{hint}: ros2 launch rejects it "
                                f"too (supported here: {supported})")
    _, lo, hi = SUPPORTED[name]
    if not lo <= count <= hi:
        raise SubstitutionError(f"$({name} ...) takes {lo}..{hi} arguments, got {count}")


def parse(text: str) -> Template:
    """``text`` as text pieces and substitutions; unknown substitutions are errors here."""
    if not text:
        return [""]
    return _Parser(text).template()


def has_substitutions(template: Template) -> bool:
    return any(isinstance(part, Substitution) for part in template)


def evaluate(template: Template, ctx: Context) -> str:
    """Perform every substitution of ``template`` (nested ones first) and join the pieces."""
    out = []
    for part in template:
        if isinstance(part, str):
            out.append(part)
        else:
            fn = SUPPORTED[part.name][0]
            out.append(fn([evaluate(arg, ctx) for arg in part.args], ctx))
    return "".join(out)


def resolve(text: str, ctx: Context) -> str:
    """Parse and evaluate ``text``."""
    return evaluate(parse(text), ctx)
