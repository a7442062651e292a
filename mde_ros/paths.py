"""Where the package's shared files (config/, launch/) and caches live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import MdeRosError

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


class ShareFileNotFoundError(MdeRosError, FileNotFoundError):
    """A file of share/mde_ros (config, launch) is in none of the places it is installed to."""


def share_dir() -> Path:
    """Installed share/mde_ros (colcon or pip + AMENT_PREFIX_PATH), else the source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mde_ros"))
    except Exception:  # not installed, or AMENT_PREFIX_PATH unset: run from the checkout
        return _SOURCE_ROOT


def installed_share_dirs() -> list[Path]:
    """share/mde_ros of the installed distribution (pip, venv or --user), found without ament.

    pip puts setup.py's data_files under the install prefix; the distribution's RECORD knows where.
    """
    from importlib import metadata

    prefix_share = Path(sys.prefix) / "share" / "mde_ros"
    try:
        dist = metadata.distribution("mde_ros")
    except metadata.PackageNotFoundError:
        return [prefix_share]
    found = {
        Path(str(dist.locate_file(f))).resolve().parents[1]
        for f in dist.files or []
        if f.parts[-3:-1] == ("mde_ros", "config")
    }
    return [*sorted(found), prefix_share]


def config_file(name: str) -> Path:
    """config/<name> from the ament share dir, the installed prefix, or the source checkout."""
    roots = list(dict.fromkeys([share_dir(), *installed_share_dirs(), _SOURCE_ROOT]))
    for root in roots:
        candidate = root / "config" / name
        if candidate.is_file():
            return candidate
    raise ShareFileNotFoundError(
        f"config/{name} not found (looked in {', '.join(str(r) for r in roots)}); reinstall mde_ros "
        "(pip install . or colcon build) or source the workspace so that AMENT_PREFIX_PATH names it"
    )


def engine_dir() -> Path:
    """Engines and exported ONNX files: MDE_ROS_ENGINE_DIR, the checkout's engines/, or ~/.cache."""
    if "MDE_ROS_ENGINE_DIR" in os.environ:
        path = Path(os.environ["MDE_ROS_ENGINE_DIR"]).expanduser()
    elif os.access(_SOURCE_ROOT / "engines", os.W_OK):
        path = _SOURCE_ROOT / "engines"
    else:
        path = Path.home() / ".cache" / "mde_ros" / "engines"
    path.mkdir(parents=True, exist_ok=True)
    return path
