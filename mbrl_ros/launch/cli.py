"""``mbrl-ros``: run ROS 2 YAML launch files from a venv, and the demo.

    mbrl-ros launch mbrl_ros baoding.launch.yaml mode:=lockstep
    mbrl-ros launch path/to/file.launch.yaml --show
    mbrl-ros demo
    mbrl-ros export-mcap runs/demo/dataset demo_dataset.mcap
    mbrl-ros mcap-recover runs/demo/recording_<time>.mcap recovered.mcap

``export-mcap`` writes the trainer's episode dataset as ROS 2 messages into a new MCAP file
(``mbrl_ros.results.mcap_export``: topics and messages); ``mcap-recover`` rewrites a
recording whose writer was killed into a complete file (``mbrl_ros.results.mcap_writer``).

``--show`` prints, in launch order, each ``set_env`` (``set_env NAME=value``) and each node's
command line (name/value parameters inline as ``-p name:=value``) and creates no files.

Exit code: when a node marked ``on_exit: shutdown`` (or named by ``--exit-with``) ends,
``mbrl-ros launch`` stops everything and returns that node's exit code, so a failed or
killed experiment shows as a failed launch. ``ros2 launch`` (launch 3.4.3) returns 0 in that
case. Other codes: 0 after SIGINT/SIGTERM or ``--duration``, 2 for a bad launch file or
command line.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from mbrl_ros.launch import launch_file, packages
from mbrl_ros.launch.process_group import ProcessGroup, install_signal_handlers, node_command

DEMO_LAUNCH = "mbrl_ros demo.launch.yaml"
DEMO_SECONDS = 1800.0  # a safety limit; the demo ends when its experiment does


def _split_arguments(items: list[str]) -> tuple[list[str], dict[str, str]]:
    """Words (package, file) and ``name:=value`` assignments, read as ``ros2 launch`` reads
    them: the last of a repeated name wins; ``:=value`` and ``name:=`` are malformed."""
    words, assignments = [], {}
    for item in items:
        count = item.count(":=")
        if not count:
            words.append(item)
            continue
        if item.startswith(":=") or (count == 1 and item.endswith(":=")):
            raise ValueError(f"malformed launch argument '{item}', expected format "
                             f"'<name>:=<value>'")
        key, value = item.split(":=", 1)
        assignments[key] = value
    return words, assignments


def show(plan: launch_file.LaunchPlan) -> None:
    """Print ``set_env`` values and node command lines in launch order (no files made)."""
    shown: dict[str, str] = {}

    def env_lines(env: dict[str, str]) -> None:
        for name, value in env.items():
            if shown.get(name) != value:
                print(f"set_env {shlex.quote(f'{name}={value}')}")
                shown[name] = value

    for node in plan.nodes:
        env_lines(node.launch_env)
        prefix = ["env", *(f"{k}={v}" for k, v in node.env.items())] if node.env else []
        print(shlex.join(prefix + node_command(node)))
    env_lines(plan.env)


def _launch(spec: str, assignments: dict[str, str], exit_with: str | None = None,
            show_only: bool = False, duration: float | None = None) -> int:
    try:
        plan = launch_file.load(launch_file.resolve_path(spec), assignments)
    except (launch_file.LaunchFileError, packages.PackageNotFoundError) as exc:
        print(f"mbrl-ros launch: error: {exc}", file=sys.stderr)
        return 2
    for name in plan.unused_arguments:
        print(f"mbrl-ros launch: warning: argument '{name}' is not declared by the launch file",
              file=sys.stderr)
    for warning in plan.warnings:
        print(f"mbrl-ros launch: warning: {warning}", file=sys.stderr)
    if show_only:
        try:
            show(plan)
        except packages.PackageNotFoundError as exc:
            print(f"mbrl-ros launch: error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        group = ProcessGroup(plan, exit_with=exit_with, duration=duration)
    except ValueError as exc:
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
    launch.add_argument("--duration", type=float, metavar="SECONDS",
                        help="shut everything down cleanly after this many seconds")
    demo = sub.add_parser("demo", help="the main job on the simulated hand (make demo)")
    demo.add_argument("items", nargs="*", help="name:=value arguments for demo.launch.yaml")
    demo.add_argument("--duration", type=float, default=DEMO_SECONDS, metavar="SECONDS",
                      help=f"stop after this many seconds at the latest (default "
                           f"{DEMO_SECONDS:g})")
    export = sub.add_parser("export-mcap", help="the trainer's episode dataset as an MCAP "
                            "file: DATASET_DIR OUT.mcap")
    export.add_argument("dataset_dir", type=Path, help="a dataset folder (<run>/dataset)")
    export.add_argument("out", type=Path, help="the MCAP file to write (must not exist)")
    export.add_argument("--task", default=None, help="task of the states' layout (default: "
                        "from the run's config.yaml; '' for none)")
    export.add_argument("--compression", default="zstd", choices=("zstd", "lz4", "none"))
    recover = sub.add_parser("mcap-recover", help="rewrite a recording cut short (its writer "
                             "was killed) into a complete MCAP file: IN.mcap OUT.mcap")
    recover.add_argument("source", type=Path)
    recover.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "export-mcap":
        return export_mcap_main(args.dataset_dir, args.out, args.task, args.compression)
    if args.command == "mcap-recover":
        return recover_main(args.source, args.out)
    try:
        words, assignments = _split_arguments(args.items)
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "demo":
        if words:
            parser.error(f"demo takes only name:=value arguments, got {words}")
        return demo_main(assignments, args.duration)
    if len(words) not in (1, 2):
        parser.error("launch takes FILE or PACKAGE FILE, then name:=value arguments")
    return _launch(" ".join(words), assignments, args.exit_with, args.show, args.duration)


def export_mcap_main(dataset_dir: Path, out: Path, task: str | None, compression: str) -> int:
    """``mbrl-ros export-mcap``: 0 on success, 1 when the dataset or the output is unusable."""
    from mbrl_ros.results.mcap_export import export_dataset

    try:
        summary = export_dataset(dataset_dir, out, task=task, compression=compression)
    except (OSError, ValueError, LookupError) as exc:
        print(f"mbrl-ros export-mcap: error: {exc}", file=sys.stderr)
        return 1
    for skipped in summary.skipped:
        print(f"mbrl-ros export-mcap: warning: skipped {skipped}", file=sys.stderr)
    counts = ", ".join(f"{topic} {n}" for topic, n in summary.messages.items())
    print(f"wrote {out}: {summary.episodes} episodes, {summary.transitions} transitions "
          f"(task '{summary.task or 'unknown'}'); messages: {counts}")
    return 0


def recover_main(source: Path, out: Path) -> int:
    """``mbrl-ros mcap-recover``: 0 on success, 1 when a file is unusable."""
    from mcap.exceptions import McapError

    from mbrl_ros.results.mcap_writer import recover_mcap

    try:
        contents = recover_mcap(source, out)
    except (OSError, ValueError, LookupError, McapError) as exc:
        print(f"mbrl-ros mcap-recover: error: {exc}", file=sys.stderr)
        return 1
    state = ("was complete" if contents.complete else
             f"ended without its summary; {contents.lost_tail_bytes} bytes after the last "
             "complete record dropped")
    print(f"wrote {out}: {len(contents.messages)} messages on {len(contents.channels)} "
          f"channels ({source} {state})")
    return 0


def demo_main(assignments: dict[str, str], duration: float) -> int:
    """Runs demo.launch.yaml: PDDM's Baoding loop on the demo budget, results in runs/demo.

    A previous demo's results are moved to ``<runs_dir>/<run_name>.previous`` first (runs_dir
    defaults to runs), so every demo learns from scratch (the trainer would otherwise resume
    the old dataset).
    """
    run_dir = Path(assignments.get("runs_dir", "runs")) / assignments.get("run_name", "demo")
    if run_dir.exists():
        previous = run_dir.with_name(run_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        run_dir.rename(previous)
        print(f"mbrl-ros demo: moved the previous results to {previous}")
    code = _launch(DEMO_LAUNCH, assignments, duration=duration)
    if code != 0:
        print(f"mbrl-ros demo: the run failed (exit code {code}); logs are listed above",
              file=sys.stderr)
        return code
    print(f"demo finished: results in {run_dir.resolve()}/ (metrics.csv, learning_curve.png, "
          f"rollout_latest.*, config.yaml; the trainer's dataset and models in dataset/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
