"""Where the package's shared files (config/, launch/) and caches live."""

from __future__ import annotations

import os
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """Installed share/mde_ros (colcon or pip + AMENT_PREFIX_PATH), else the source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mde_ros"))
    except Exception:  # not installed, or AMENT_PREFIX_PATH unset: run from the checkout
        return _SOURCE_ROOT


def config_file(name: str) -> Path:
    for root in (share_dir(), _SOURCE_ROOT):
        candidate = root / "config" / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config/{name} not found in {share_dir()} or {_SOURCE_ROOT}")


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
