"""``mbrl-ros``: run ROS 2 YAML launch files from a venv, and the demo.

    mbrl-ros launch mbrl_ros baoding.launch.yaml mode:=lockstep
    mbrl-ros launch path/to/file.launch.yaml --show
    mbrl-ros demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mbrl_ros.launch import launch_file, packages
from mbrl_ros.launch.process_group import ProcessGroup, install_signal_handlers, node_command

DEMO_LAUNCH = "mbrl_ros demo.launch.yaml"
DEMO_EXIT_WITH = "experiment"


def _split_arguments(items: list[str]) -> tuple[list[str], dict[str, str]]:
    words, assignments = [], {}
    for item in items:
        if ":=" in item:
            key, value = item.split(":=", 1)
            assignments[key] = value
        else:
            words.append(item)
    return words, assignments


def _launch(spec: str, assignments: dict[str, str], exit_with: str | None, show: bool) -> int:
    try:
        plan = launch_file.load(launch_file.resolve_path(spec), assignments)
    except (launch_file.LaunchFileError, packages.PackageNotFoundError) as exc:
        print(f"mbrl-ros launch: error: {exc}", file=sys.stderr)
        return 2
    for name in plan.unused_arguments:
        print(f"mbrl-ros launch: warning: argument '{name}' is not declared by the launch file",
              file=sys.stderr)
    if show:
        for node in plan.nodes:
            print(" ".join(node_command(node, Path(tempfile.gettempdir()))))
        return 0
    try:
        group = ProcessGroup(plan, exit_with=exit_with)
    except (ValueError, packages.PackageNotFoundError) as exc:
        print(f"mbrl-ros launch: error: {exc}", file=sys.stderr)
        return 2
    install_signal_handlers(group)
    try:
        return group.run()
    except packages.PackageNotFoundError as exc:
        print(f"mbrl-ros launch: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mbrl-ros", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    launch = sub.add_parser("launch", help="run a launch file: [PACKAGE] FILE [name:=value ...]")
    launch.add_argument("items", nargs="+", help="[PACKAGE] FILE, then name:=value arguments")
    launch.add_argument("--exit-with", metavar="NODE",
                        help="stop everything when this node exits and return its exit code")
    launch.add_argument("--show", action="store_true",
                        help="print the node command lines instead of running them")
    demo = sub.add_parser("demo", help="the main job on the simulated hand (make demo)")
    demo.add_argument("items", nargs="*", help="name:=value arguments for demo.launch.yaml")
    args = parser.parse_args(argv)

    words, assignments = _split_arguments(args.items)
    if args.command == "demo":
        if words:
            parser.error(f"demo takes only name:=value arguments, got {words}")
        return _launch(DEMO_LAUNCH, assignments, DEMO_EXIT_WITH, show=False)
    if len(words) not in (1, 2):
        parser.error("launch takes FILE or PACKAGE FILE, then name:=value arguments")
    return _launch(" ".join(words), assignments, args.exit_with, args.show)


if __name__ == "__main__":
    sys.exit(main())
