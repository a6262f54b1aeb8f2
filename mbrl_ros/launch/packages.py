"""Find ROS packages the way ament_index does: through AMENT_PREFIX_PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path


class PackageNotFoundError(LookupError):
    """A package or executable is not in any prefix of AMENT_PREFIX_PATH."""


def prefixes() -> list[Path]:
    """Install prefixes to search: AMENT_PREFIX_PATH, else this interpreter's prefix (a venv)."""
    raw = os.environ.get("AMENT_PREFIX_PATH", "")
    found = [Path(p) for p in raw.split(os.pathsep) if p]
    return found or [Path(sys.prefix)]


def package_prefix(package: str) -> Path:
    """The prefix holding ``package`` (marked in the ament resource index)."""
    for prefix in prefixes():
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).exists():
            return prefix
    searched = ", ".join(str(p) for p in prefixes())
    raise PackageNotFoundError(f"package '{package}' not found in AMENT_PREFIX_PATH ({searched})")


def package_share(package: str) -> Path:
    """``<prefix>/share/<package>``, the package's installed data (launch/, config/)."""
    return package_prefix(package) / "share" / package


def executable(package: str, name: str) -> Path:
    """``<prefix>/lib/<package>/<name>``, where ament packages install node executables."""
    path = package_prefix(package) / "lib" / package / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise PackageNotFoundError(f"executable '{name}' not found in package '{package}' ({path})")
    return path
