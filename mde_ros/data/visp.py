"""Real RGB-D sequences from Debian's `visp-images-data` package (folder `mbt-depth/`).

- `castel`: a real Intel SR300 capture, 30 frames, 640x480 grey images, uint16 depth
  (0.000124986647 m per unit) from the depth camera, registered here into the image camera.
- `Castle-simu`: a rendered sequence, 40 frames, depth (1/32768 m per unit) from a depth camera
  5 cm beside the image camera, and per-frame poses `CameraPose/Camera_%03d.txt` (cMo: the object
  pose in the image camera frame).

The package is downloaded with `apt-get download` (Debian's registry) and only `mbt-depth/` is
extracted into the data cache (`MDE_ROS_DATA`, default `~/.cache/mde_ros/data`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MdeRosError
from ..geometry.intrinsics import CameraIntrinsics

PACKAGE = "visp-images-data"
_INSTALLED = Path("/usr/share/visp-images-data/ViSP-images/mbt-depth")
CASTEL_DEPTH_SCALE = 0.000124986647  # metres per unit (SR300)
SIMU_DEPTH_SCALE = 0.000030518  # metres per unit (1/32768, from ViSP's own reader)
# Castle-simu's depth camera sits 5 cm beside the image camera: depth_M_color translation x = -0.05.
_SIMU_DEPTH_M_COLOR = np.array([[1, 0, 0, -0.05], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)


@dataclass
class RgbdFrame:
    index: int
    rgb: np.ndarray  # HxWx3 uint8 (grey replicated: these cameras are monochrome)
    depth: np.ndarray  # HxW float32 metres along the optical axis of the image camera, NaN invalid
    intrinsics: CameraIntrinsics
    pose_cam_obj: np.ndarray | None = None  # 4x4, object -> image camera (Castle-simu only)


def data_root() -> Path:
    return Path(os.environ.get("MDE_ROS_DATA", Path.home() / ".cache" / "mde_ros" / "data"))


def fetch_mbt_depth(root: Path | None = None) -> Path:
    """Path of the `mbt-depth` folder, downloading and extracting it once if needed."""
    if (_INSTALLED / "castel").is_dir():
        return _INSTALLED
    target = (root or data_root()) / "mbt-depth"
    if (target / "castel" / "castel").is_dir() and (target / "Castle-simu" / "Depth").is_dir():
        return target
    from ..progress import stages

    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        stages(f"sample data ({PACKAGE})", 2) as stage,
        tempfile.TemporaryDirectory(dir=target.parent) as tmp,
    ):
        stage("downloading (75 MB, once)")
        deb = _download_deb(Path(tmp))
        stage("extracting mbt-depth")
        extract = Path(tmp) / "x"
        extract.mkdir()
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        members = ["--wildcards", "*/mbt-depth/*"]
        subprocess.run(["tar", "-x", "-C", str(extract), *members], stdin=tar.stdout, check=True)
        tar.wait()
        found = next(extract.rglob("mbt-depth"), None)
        if found is None:
            raise MdeRosError(f"{deb.name} has no mbt-depth/ folder")
        shutil.move(str(found), str(target))
    return target


def _download_deb(folder: Path) -> Path:
    def download() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", PACKAGE], cwd=folder, capture_output=True, text=True)

    result = download()
    if result.returncode != 0 and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)  # package lists may be missing
        result = download()
    debs = sorted(folder.glob(f"{PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        raise MdeRosError(
            f"could not download Debian package {PACKAGE} ({result.stderr.strip()[-300:]}). "
            f"Run `apt-get update && apt-get download {PACKAGE}` in {data_root()} or set MDE_ROS_DATA "
            "to a folder that holds mbt-depth/"
        )
    return debs[-1]


def read_depth_bin(path: Path, scale: float) -> np.ndarray:
    """ViSP depth file: little-endian uint32 height, width, then uint16 values -> metres, NaN for 0."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise MdeRosError(f"{path}: truncated depth file")
    height, width = (int(v) for v in np.frombuffer(raw[:8], "<u4"))
    if len(raw) != 8 + 2 * height * width:
        raise MdeRosError(f"{path}: expected {height}x{width} uint16 values, file has {len(raw) - 8} bytes")
    units = np.frombuffer(raw, "<u2", offset=8).reshape(height, width)
    depth = units.astype(np.float32) * np.float32(scale)
    depth[units == 0] = np.nan
    return depth


def read_visp_camera(xml_path: Path, width: int = 640, height: int = 480) -> CameraIntrinsics:
    """Intrinsics (px, py, u0, v0) from a ViSP tracker XML file."""
    text = xml_path.read_text()

    def value(tag: str) -> float:
        match = re.search(rf"<{tag}>\s*([-0-9.eE+]+)\s*</{tag}>", text)
        if not match:
            raise MdeRosError(f"{xml_path}: no <{tag}> in <camera>")
        return float(match.group(1))

    return CameraIntrinsics(value("px"), value("py"), value("u0"), value("v0"), width, height)


def register_depth(
    depth: np.ndarray,
    depth_k: CameraIntrinsics,
    color_k: CameraIntrinsics,
    color_t_depth: np.ndarray,
    fill_holes: bool = True,
) -> np.ndarray:
    """Re-project a depth image into another camera (nearest pixel, z-buffered), NaN where unseen."""
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - depth_k.cx) * z / depth_k.fx, (v - depth_k.cy) * z / depth_k.fy, z])
    points = color_t_depth[:3, :3] @ points + color_t_depth[:3, 3:4]
    zc = points[2]
    front = zc > 1e-6
    uc = np.round(points[0, front] / zc[front] * color_k.fx + color_k.cx).astype(np.int64)
    vc = np.round(points[1, front] / zc[front] * color_k.fy + color_k.cy).astype(np.int64)
    zc = zc[front]
    inside = (uc >= 0) & (uc < color_k.width) & (vc >= 0) & (vc < color_k.height)
    uc, vc, zc = uc[inside], vc[inside], zc[inside]
    out = np.full((color_k.height, color_k.width), np.inf)
    np.minimum.at(out, (vc, uc), zc)  # nearest surface wins
    out = out.astype(np.float32)
    if fill_holes:
        # A lower-resolution depth camera leaves a 1-pixel grid of holes; close them (holes only).
        import cv2

        nearest = cv2.erode(out, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
        holes = np.isinf(out)
        out[holes] = nearest[holes]
    out[np.isinf(out)] = np.nan
    return out


def _grey_to_rgb(path: Path) -> np.ndarray:
    import cv2

    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise MdeRosError(f"cannot read image {path}")
    return np.repeat(grey[:, :, None], 3, axis=2)


def castel_frames(root: Path | None = None, indices: list[int] | None = None) -> list[RgbdFrame]:
    """The real SR300 sequence, depth registered into the image camera."""
    folder = (root or fetch_mbt_depth()) / "castel"
    color_k = read_visp_camera(folder / "chateau.xml")
    depth_k = read_visp_camera(folder / "chateau_depth.xml")
    depth_m_color = np.loadtxt(folder / "depth_M_color.txt").reshape(4, 4)
    color_t_depth = np.linalg.inv(depth_m_color)
    count = len(list((folder / "castel").glob("image_*.pgm")))
    frames = []
    for i in indices if indices is not None else range(count):
        rgb = _grey_to_rgb(folder / "castel" / f"image_{i:04d}.pgm")
        raw = read_depth_bin(folder / "castel" / f"depth_image_{i:04d}.bin", CASTEL_DEPTH_SCALE)
        depth = register_depth(raw, depth_k, color_k, color_t_depth)
        frames.append(RgbdFrame(i, rgb, depth, color_k))
    return frames


def castle_simu_frames(root: Path | None = None, indices: list[int] | None = None) -> list[RgbdFrame]:
    """The rendered sequence with ground-truth poses (frame numbers start at 1)."""
    folder = (root or fetch_mbt_depth()) / "Castle-simu"
    color_k = read_visp_camera(folder / "Config" / "chateau.xml")
    depth_k = read_visp_camera(folder / "Config" / "chateau_depth.xml")
    color_t_depth = np.linalg.inv(_SIMU_DEPTH_M_COLOR)
    count = len(list((folder / "Images").glob("Image_*.pgm")))
    frames = []
    for i in indices if indices is not None else range(1, count + 1):
        rgb = _grey_to_rgb(folder / "Images" / f"Image_{i:04d}.pgm")
        raw = read_depth_bin(folder / "Depth" / f"Depth_{i:04d}.bin", SIMU_DEPTH_SCALE)
        depth = register_depth(raw, depth_k, color_k, color_t_depth)
        pose = np.loadtxt(folder / "CameraPose" / f"Camera_{i:03d}.txt").reshape(4, 4)
        frames.append(RgbdFrame(i, rgb, depth, color_k, pose))
    return frames
