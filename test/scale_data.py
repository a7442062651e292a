"""Real data for the scale tests, fetched once into the data cache (never committed).

- visp-images-data (Debian): `mde_ros.data.visp`.
- The `evo` sdist (PyPI) carries real TUM RGB-D trajectories in test/data/: ground truth and an
  ORB-SLAM monocular keyframe trajectory.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

EVO_VERSION = "1.38.1"
TUM_FILES = ("freiburg1_xyz-groundtruth.txt", "freiburg1_xyz-ORB_kf_mono.txt")


def evo_data() -> Path:
    """Folder with the TUM trajectories from the evo sdist; fails, with pip's reason, without them.

    pip prepares the sdist's metadata even for `pip download`: with build isolation (the
    default) it fetches evo's build backend (hatchling) itself, so this works the same on every
    machine that can reach PyPI, whatever the venv holds.
    """
    from mde_ros.data.visp import data_root

    folder = data_root() / "evo"
    if all((folder / name).is_file() for name in TUM_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sdist = folder / f"evo-{EVO_VERSION}.tar.gz"
    if not sdist.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"evo=={EVO_VERSION}", "-d", str(folder)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not sdist.is_file():
            pytest.fail(f"cannot download the evo {EVO_VERSION} sdist from PyPI: {result.stderr[-600:]}")
    with tarfile.open(sdist) as tar:
        for name in TUM_FILES:
            member = tar.getmember(f"evo-{EVO_VERSION}/test/data/{name}")
            (folder / name).write_bytes(tar.extractfile(member).read())
    return folder


def read_tum(path: Path) -> np.ndarray:
    """TUM trajectory: rows of stamp, x, y, z, qx, qy, qz, qw."""
    return np.loadtxt(path, comments="#")


def visp_data():
    """mde_ros.data.visp with its Debian package fetched; fails with the reason when it cannot be."""
    from mde_ros.data import visp
    from mde_ros.errors import MdeRosError

    try:
        visp.fetch_mbt_depth()
    except MdeRosError as exc:
        pytest.fail(f"visp-images-data (Debian) could not be fetched: {exc}")
    return visp
