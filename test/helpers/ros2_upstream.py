"""The upstream ``ros2 launch`` / ``ros2`` CLI kit (ROS 2 Jazzy) for conformance tests.

The kit lives beside the project, ``../shared/tools/ros2-upstream`` (not part of it: see its
README). ``install_kit`` installs it once into
``~/.cache/mbrl_ros/ros2-upstream/<hash of the kit and this venv>`` (about a minute, the first
time only) and returns its ``ros2env`` wrapper; the ``ros2env`` fixture of conftest.py calls
it, skipping with the reason where the kit folder is absent.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KIT = REPO.parent / "shared" / "tools" / "ros2-upstream"
KIT_ABSENT = (f"{KIT} is absent: the upstream ros2 launch kit lives beside the project "
              f"(../shared/tools/ros2-upstream)")


def _kit_key() -> str:
    digest = hashlib.sha256(sys.prefix.encode())
    for path in sorted(KIT.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(KIT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def install_kit(log_dir: Path) -> Path:
    """The installed kit's ``ros2env`` wrapper (installed once per kit content and venv; an
    install log goes to ``log_dir``). The kit folder must exist."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dest = cache / "mbrl_ros" / "ros2-upstream" / _kit_key()
    dest.parent.mkdir(parents=True, exist_ok=True)
    ready = dest / ".mbrl_ros-ready"
    with open(dest.parent / f"{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time across pytest sessions
        if not ready.exists():
            log = log_dir / "install.log"
            with log.open("w") as out:
                code = subprocess.run(["bash", str(KIT / "install.sh"), sys.prefix, str(dest)],
                                      stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode
            assert code == 0, f"installing the upstream kit failed:\n{log.read_text()[-3000:]}"
            ready.touch()
    return dest / "ros2env"


def upstream_env(folder: Path) -> dict[str, str]:
    """The environment of both launchers and the CLI: this run's random domain (conftest.py),
    loopback discovery, logs and temporary files inside ``folder``, this venv's packages
    only (``ros2env`` sets AMENT_PREFIX_PATH)."""
    tmp = folder / "tmp"
    tmp.mkdir(parents=True)
    out = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
    out.update(ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 100)),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(folder / "log"),
               TMPDIR=str(tmp))
    return out
