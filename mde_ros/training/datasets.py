"""RGB + ground-truth depth folders for training and evaluation, with errors that name the file.

Layout (one folder):
    rgb/<stem>.png|jpg           images (all the same size)
    depth/<stem>.png|npy|exr     ground truth, same size as the image; 16-bit PNG in `depth_scale`
                                 metres per unit (default 0.001: millimetres), .npy float metres;
                                 0 / NaN / inf = invalid
    intrinsics.txt (optional)    `fx fy cx cy` for all images, or intrinsics/<stem>.txt per image

`ground_truth="disparity"` reads the depth files as (relative) inverse depth instead.
Built-in sequences: `visp:castel` and `visp:castle-simu` (Debian visp-images-data), and
`middlebury:motorcycle` (scikit-image's wheel; evaluation only, never train on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from ..geometry.intrinsics import CameraIntrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
DEPTH_SUFFIXES = (".png", ".npy", ".exr", ".tif", ".tiff")
# Plausible depth range for the unit check: a median outside it means the unit is wrong.
MEDIAN_DEPTH_RANGE = (0.05, 500.0)
# The real wide-range evaluation scene: `mde-ros train` refuses it.
EVALUATION_ONLY = "middlebury:motorcycle"


@dataclass
class Sample:
    name: str
    rgb: np.ndarray  # HxWx3 uint8
    depth: np.ndarray  # HxW float32 metres (or disparity), NaN invalid
    intrinsics: CameraIntrinsics | None = None


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInputError(f"{path}: cannot read image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: Path, depth_scale: float) -> np.ndarray:
    """Depth file -> float32 metres, NaN where invalid."""
    import cv2

    if path.suffix == ".npy":
        depth = np.load(path).astype(np.float32)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise InvalidInputError(f"{path}: cannot read depth file")
        if raw.ndim != 2:
            raise InvalidInputError(f"{path}: depth must be single-channel, got shape {raw.shape}")
        if raw.dtype == np.uint8:
            raise InvalidInputError(
                f"{path}: 8-bit depth cannot hold metric depth; save 16-bit PNG (millimetres) or .npy metres"
            )
        depth = raw.astype(np.float32) * (
            np.float32(depth_scale) if np.issubdtype(raw.dtype, np.integer) else 1
        )
    if depth.ndim != 2:
        raise InvalidInputError(f"{path}: depth must be HxW, got shape {depth.shape}")
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def _check_unit(path: Path, depth: np.ndarray, depth_scale: float) -> None:
    valid = depth[np.isfinite(depth)]
    if valid.size == 0:
        raise InvalidInputError(f"{path}: no valid depth pixel")
    median = float(np.median(valid))
    low, high = MEDIAN_DEPTH_RANGE
    if not low <= median <= high:
        raise InvalidInputError(
            f"{path}: median depth {median:.4g} m is outside {low}-{high} m: wrong unit? "
            f"(depth_scale={depth_scale} m per unit; 16-bit PNG in millimetres needs 0.001)"
        )


def _intrinsics(folder: Path, stem: str, width: int, height: int) -> CameraIntrinsics | None:
    for path in (folder / "intrinsics" / f"{stem}.txt", folder / "intrinsics.txt"):
        if path.is_file():
            values = np.loadtxt(path).ravel()
            if values.size < 4:
                raise InvalidInputError(f"{path}: expected `fx fy cx cy`")
            return CameraIntrinsics(*(float(v) for v in values[:4]), width, height)
    return None


def _find(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()), None)


def load_folder(
    folder: str | Path, depth_scale: float = 0.001, ground_truth: str = "depth", limit: int = 0
) -> list[Sample]:
    """All samples of a dataset folder (see the module docstring), checked."""
    folder = Path(folder)
    rgb_dir, depth_dir = folder / "rgb", folder / "depth"
    for needed in (rgb_dir, depth_dir):
        if not needed.is_dir():
            raise InvalidInputError(f"{folder}: missing {needed.name}/ folder (expected rgb/ and depth/)")
    images = sorted(p for p in rgb_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InvalidInputError(f"{rgb_dir}: no images")
    depth_stems = {p.stem for p in depth_dir.iterdir() if p.suffix.lower() in DEPTH_SUFFIXES}
    orphans = sorted(depth_stems - {p.stem for p in images})
    if orphans:
        raise InvalidInputError(f"{depth_dir}: depth files without an image: {', '.join(orphans[:5])}")
    samples, size = [], None
    for image_path in images[: limit or None]:
        depth_path = _find(depth_dir, image_path.stem, DEPTH_SUFFIXES)
        if depth_path is None:
            raise InvalidInputError(
                f"{image_path}: no depth file {depth_dir}/{image_path.stem}.(png|npy|exr)"
            )
        rgb = _read_rgb(image_path)
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise InvalidInputError(
                f"{image_path}: image is {rgb.shape[1]}x{rgb.shape[0]} "
                f"but the first image is {size[1]}x{size[0]}"
            )
        depth = read_depth(depth_path, depth_scale)
        if depth.shape != rgb.shape[:2]:
            raise InvalidInputError(
                f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]}, image {image_path.name} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}"
            )
        if ground_truth == "depth":
            _check_unit(depth_path, depth, depth_scale)
        intrinsics = _intrinsics(folder, image_path.stem, rgb.shape[1], rgb.shape[0])
        samples.append(Sample(image_path.stem, rgb, depth, intrinsics))
    return samples


def load_dataset(source: str, depth_scale: float = 0.001, ground_truth: str = "depth", limit: int = 0):
    """A folder, or `visp:castel` / `visp:castle-simu` / `middlebury:motorcycle`."""
    if source.lower() == EVALUATION_ONLY:
        from ..data.middlebury import motorcycle_frames

        return [Sample("motorcycle", f.rgb, f.depth, f.intrinsics) for f in motorcycle_frames()]
    if source.startswith("visp:"):
        from ..data import visp

        name = source.split(":", 1)[1].lower()
        readers = {"castel": visp.castel_frames, "castle-simu": visp.castle_simu_frames}
        if name not in readers:
            raise InvalidInputError(
                f"unknown built-in sequence {source!r}; use visp:castel or visp:castle-simu"
            )
        frames = readers[name]()
        samples = [Sample(f"{name}_{f.index:04d}", f.rgb, f.depth, f.intrinsics) for f in frames]
        return samples[: limit or None]
    return load_folder(source, depth_scale, ground_truth, limit)
