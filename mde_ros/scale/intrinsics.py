"""`scale.mode: intrinsics`: scale from the camera's mounting height above a visible ground plane.

Relative models: on the ground, 1/z = (n·r) / h for the pixel ray r = ((u-cx)/fx, (v-cy)/fy, 1),
plane normal n (unit, optical frame) and camera height h; with 1/z = s d + t, the disparity is an
affine function of the normalised pixel coordinates, d = a x + b y + c, with
(a, b) = (n_x, n_y) / (h s) and c = (n_z / h - t) / s. The ground gives (a, b, c) (RANSAC on the
bottom `ground_region` of the image); (s, t) then follow from h = `camera_height` and the pitch
prior `camera_pitch` (n_z = sin(pitch)): s = cos(pitch) / (h |(a, b)|), t = sin(pitch) / h - s c.
s depends on the pitch only through cos(pitch) (a 10° prior error costs 1.5 %); t needs it.

A "ground" whose disparity does not grow towards the image bottom, leans more than
MAX_TILT_DEG sideways, or implies a pitch far from the prior is a wall: rejected.

Metric models: the ground plane is fitted to the back-projected metric cloud, checked against the
prior, and the depth factor camera_height / fitted height is applied.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from ..models.spec import DISPARITY
from .base import ScaleInput
from .filter import FilteredEstimator, Measurement, Rejection

MAX_TILT_DEG = 30.0  # how far the fitted ground normal may lean from the prior's "down"
MAX_SAMPLES = 3000  # ground pixels used per frame (a regular grid)
ITERATIONS = 200


class IntrinsicsScale(FilteredEstimator):
    mode = "intrinsics"

    def __init__(
        self,
        camera_height: float,
        camera_pitch_deg: float,
        ground_region: float,
        min_inlier_ratio: float,
        time_constant: float,
        max_jump: float,
        threshold: float = 0.05,
    ) -> None:
        super().__init__(time_constant, max_jump)
        if not camera_height > 0:
            raise ValueError("scale.camera_height must be positive (metres) for scale.mode intrinsics")
        if not 0 < ground_region <= 1:
            raise ValueError("scale.ground_region must be in (0, 1]")
        self.height = camera_height
        self.pitch = math.radians(camera_pitch_deg)
        self.ground_region = ground_region
        self.min_inlier_ratio = min_inlier_ratio
        self.threshold = threshold

    def measure(self, item: ScaleInput) -> Measurement | Rejection | str | None:
        if item.intrinsics is None:
            return Rejection("no_camera_info", "no CameraInfo: the ground cannot be back-projected")
        relative = item.convention == DISPARITY
        values = item.prediction if relative or item.depth is None else item.depth
        x, y, value = ground_samples(values, item.intrinsics, self.ground_region)
        if x.size < 50:
            return Rejection("ground_not_visible", f"only {x.size} valid pixels in the ground region")
        if relative:
            return self._relative(x, y, value)
        return self._metric(x, y, value)

    def _relative(self, x: np.ndarray, y: np.ndarray, d: np.ndarray) -> Measurement | Rejection:
        design = np.stack([x, y, np.ones_like(x)], axis=1)
        fit = ransac_linear(design, d, self.rng, self.threshold)
        if fit is None or fit[1].mean() < self.min_inlier_ratio:
            ratio = 0.0 if fit is None else fit[1].mean()
            return Rejection("ground_not_visible", f"ground plane inliers {ratio:.0%} < min_inlier_ratio")
        (a, b, c), inliers, cov = fit
        gradient = math.hypot(a, b)
        implied_pitch = math.atan2(c, gradient)  # the pitch if the model had no shift
        tilt = math.degrees(math.atan2(abs(a), b)) if b > 0 else 180.0
        if b <= 0 or tilt > MAX_TILT_DEG or abs(math.degrees(implied_pitch - self.pitch)) > MAX_TILT_DEG:
            return Rejection("wall_not_ground", "the bottom of the image is not a ground plane (a wall?)")
        scale = math.cos(self.pitch) / (self.height * gradient)
        shift = math.sin(self.pitch) / self.height - scale * c
        if not np.all(scale * d[inliers] + shift > 0):
            return Rejection("degenerate_fit", "the ground fit puts ground points behind the camera")
        gradient_var = (a * a * cov[0, 0] + b * b * cov[1, 1] + 2 * a * b * cov[0, 1]) / gradient**2
        log_std = math.sqrt(max(gradient_var, 0.0)) / gradient
        ratio = float(inliers.mean())
        note = f"ground plane inliers {ratio:.0%} of {d.size} pixels"
        return Measurement(scale, shift, log_std, ratio, int(inliers.sum()), note)

    def _metric(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Measurement | Rejection:
        # On the plane, 1/z = m·r with m = n / h: linear in m, no shift to worry about.
        design = np.stack([x, y, np.ones_like(x)], axis=1)
        fit = ransac_linear(design, 1.0 / z, self.rng, self.threshold)
        if fit is None or fit[1].mean() < self.min_inlier_ratio:
            ratio = 0.0 if fit is None else fit[1].mean()
            return Rejection("ground_not_visible", f"ground plane inliers {ratio:.0%} < min_inlier_ratio")
        m, inliers, cov = fit
        norm = float(np.linalg.norm(m))
        normal = m / norm
        down = np.array([0.0, math.cos(self.pitch), math.sin(self.pitch)])
        if math.degrees(math.acos(min(1.0, float(normal @ down)))) > MAX_TILT_DEG:
            return Rejection("wall_not_ground", "the fitted plane is far from the pitch prior (a wall?)")
        factor = self.height * norm  # fitted height is 1/|m|
        log_std = math.sqrt(max(float(normal @ cov @ normal), 0.0)) / norm
        ratio = float(inliers.mean())
        note = f"ground plane inliers {ratio:.0%}, fitted height {1 / norm:.3f} m"
        return Measurement(factor, 0.0, log_std, ratio, int(inliers.sum()), note)


def ground_samples(
    values: np.ndarray, intrinsics: CameraIntrinsics, region: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised pixel coordinates and values on a grid over the bottom `region` of the image."""
    height, width = values.shape
    top = int(height * (1.0 - region))
    step = max(1, int(math.sqrt((height - top) * width / MAX_SAMPLES)))
    rows = np.arange(top, height, step)
    cols = np.arange(0, width, step)
    grid = values[np.ix_(rows, cols)].astype(np.float64)
    vv, uu = np.meshgrid(rows, cols, indexing="ij")
    valid = np.isfinite(grid) & (grid > 0)
    x = (uu[valid] - intrinsics.cx) / intrinsics.fx
    y = (vv[valid] - intrinsics.cy) / intrinsics.fy
    return x, y, grid[valid]


def ransac_linear(
    design: np.ndarray, target: np.ndarray, rng: np.random.Generator, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """target ≈ design @ p with relative residuals; minimal sets solved in one batched call."""
    n, k = design.shape
    if n < 3 * k:
        return None
    picks = rng.integers(0, n, size=(ITERATIONS, k))
    a, b = design[picks], target[picks]
    solvable = np.abs(np.linalg.det(a)) > 1e-12
    if not solvable.any():
        return None
    params = np.linalg.solve(a[solvable], b[solvable][..., None])[..., 0]
    residual = np.abs(params @ design.T - target) / np.abs(target)
    best = int(np.argmax((residual < threshold).sum(axis=1)))
    inliers = residual[best] < threshold
    for _ in range(2):  # least squares on the inliers, then re-select them
        if inliers.sum() < 3 * k:
            return None
        weights = 1.0 / target[inliers]  # relative residuals
        p, *_ = np.linalg.lstsq(design[inliers] * weights[:, None], np.ones(inliers.sum()), rcond=None)
        inliers = np.abs(design @ p - target) / np.abs(target) < threshold
    scaled = design[inliers] / target[inliers, None]
    sigma = float(np.std(scaled @ p - 1.0)) + 1e-9
    cov = np.linalg.pinv(scaled.T @ scaled) * sigma**2
    return p, inliers, cov
