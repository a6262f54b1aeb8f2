"""Launch substitutions: ``$(var x)``, ``$(env X [default])``, ``$(find-pkg-share p)`` ...

Only the substitutions listed in ``SUPPORTED`` are understood; any other one is an error
that names it, so a launch file never half-works.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from mbrl_ros.launch import packages


class SubstitutionError(ValueError):
    """A substitution is unknown, malformed or cannot be resolved."""


def _var(args: list[str], ctx: Context) -> str:
    _expect(args, 1, 1, "var")
    if args[0] not in ctx.variables:
        raise SubstitutionError(f"$(var {args[0]}): no launch argument or 'let' named '{args[0]}'")
    return ctx.variables[args[0]]


def _env(args: list[str], ctx: Context) -> str:
    _expect(args, 1, 2, "env")
    if args[0] in os.environ:
        return os.environ[args[0]]
    if len(args) == 2:
        return args[1]
    raise SubstitutionError(f"$(env {args[0]}): environment variable not set and no default")


def _optenv(args: list[str], ctx: Context) -> str:
    _expect(args, 1, 2, "optenv")
    return os.environ.get(args[0], args[1] if len(args) == 2 else "")


def _pkg_share(args: list[str], ctx: Context) -> str:
    _expect(args, 1, 1, "find-pkg-share")
    return str(packages.package_share(args[0]))


def _pkg_prefix(args: list[str], ctx: Context) -> str:
    _expect(args, 1, 1, "find-pkg-prefix")
    return str(packages.package_prefix(args[0]))


def _dirname(args: list[str], ctx: Context) -> str:
    _expect(args, 0, 0, "dirname")
    return str(ctx.current_file.parent)


def _filename(args: list[str], ctx: Context) -> str:
    _expect(args, 0, 0, "filename")
    return str(ctx.current_file)


def _expect(args: list[str], lo: int, hi: int, name: str) -> None:
    if not lo <= len(args) <= hi:
        raise SubstitutionError(f"$({name} ...) takes {lo}..{hi} arguments, got {len(args)}")


SUPPORTED: dict[str, Callable[[list[str], Context], str]] = {
    "var": _var,
    "env": _env,
    "optenv": _optenv,
    "find-pkg-share": _pkg_share,
    "find-pkg-prefix": _pkg_prefix,
    "dirname": _dirname,
    "filename": _filename,
}


class Context:
    """What substitutions can see: launch variables and the file being read."""

    def __init__(self, variables: Mapping[str, str], current_file: Path) -> None:
        self.variables = dict(variables)
        self.current_file = current_file

    def child(self, current_file: Path, extra: Mapping[str, str]) -> Context:
        """A scope for an included file: sees our variables plus its include arguments."""
        return Context({**self.variables, **extra}, current_file)


def resolve(text: str, ctx: Context) -> str:
    """Replace every ``$(...)`` in ``text`` (nested ones first)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("$(", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        end = _matching_paren(text, start + 1)
        inner = resolve(text[start + 2 : end], ctx)
        words = shlex.split(inner)
        if not words:
            raise SubstitutionError(f"empty substitution in '{text}'")
        fn = SUPPORTED.get(words[0])
        if fn is None:
            raise SubstitutionError(
                f"substitution '$({words[0]} ...)' is not supported by mbrl-ros launch "
                f"(supported: {', '.join(SUPPORTED)})"
            )
        out.append(fn(words[1:], ctx))
        i = end + 1
    return "".join(out)


def _matching_paren(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise SubstitutionError(f"unclosed '$(' in '{text}'")
