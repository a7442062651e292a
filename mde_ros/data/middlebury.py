"""Middlebury 2014 "Motorcycle" (real, 2.2-4.8 m): the project's wide-range evaluation scene.

The scikit-image wheel ships the left image and the ground-truth disparity at quarter resolution
(`skimage/data/motorcycle_left.png`, `motorcycle_disp.npz`, inf = unknown). With the full-resolution
calibration published with the scene (f = 3979.911 px, cx = 1244.772, cy = 1019.507, baseline
193.001 mm, doffs 124.343 px) the depth is baseline * f / (4 d + doffs).

Evaluation only: never train on it. The files are taken from the wheel that `pip download` fetches
from PyPI into the data cache (`MDE_ROS_DATA`, default `~/.cache/mde_ros/data`), or from an
installed scikit-image.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import MdeRosError
from ..geometry.intrinsics import CameraIntrinsics
from .visp import RgbdFrame, data_root

SKIMAGE_WHEEL = "scikit-image==0.26.0"
FILES = ("motorcycle_left.png", "motorcycle_disp.npz")
FOCAL_PX, CX_PX, CY_PX = 3979.911, 1244.772, 1019.507  # full resolution
BASELINE_M, DOFFS_PX = 0.193001, 124.343
DOWNSCALE = 4  # the wheel's files are quarter resolution


def fetch_motorcycle(root: Path | None = None) -> Path:
    """The folder holding FILES: an installed scikit-image's data folder, or the data cache."""
    try:
        import skimage

        installed = Path(skimage.__file__).parent / "data"
        if all((installed / name).is_file() for name in FILES):
            return installed
    except ImportError:
        pass
    folder = (root or data_root()) / "middlebury-motorcycle"
    if all((folder / name).is_file() for name in FILES):
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, SKIMAGE_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("scikit_image-*.whl"))
        if result.returncode != 0 or not wheels:
            raise MdeRosError(
                f"could not fetch {SKIMAGE_WHEEL} from PyPI for Middlebury Motorcycle: "
                f"{result.stderr.strip()[-300:]}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as archive:
            for name in FILES:
                (folder / name).write_bytes(archive.read(f"skimage/data/{name}"))
    return folder


def motorcycle_frames(root: Path | None = None) -> list[RgbdFrame]:
    """The one Motorcycle frame: RGB uint8, depth metres (NaN unknown), quarter-resolution intrinsics."""
    folder = fetch_motorcycle(root)
    rgb = cv2.cvtColor(cv2.imread(str(folder / FILES[0])), cv2.COLOR_BGR2RGB)
    disparity = np.load(folder / FILES[1])["arr_0"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = BASELINE_M * FOCAL_PX / (DOWNSCALE * disparity + DOFFS_PX)
    depth[~np.isfinite(disparity) | (disparity <= 0)] = np.nan
    height, width = depth.shape
    if rgb.shape[:2] != depth.shape:
        raise MdeRosError(f"Motorcycle image {rgb.shape[:2]} and disparity {depth.shape} differ")
    scale = 1.0 / DOWNSCALE
    intrinsics = CameraIntrinsics(
        FOCAL_PX * scale, FOCAL_PX * scale, CX_PX * scale, CY_PX * scale, width, height
    )
    return [RgbdFrame(0, rgb, depth.astype(np.float32), intrinsics)]
