"""`scale.mode: sparse`: metric points (LiDAR, stereo, SLAM map points) -> robust fit of the output.

Points arrive in their own frame; `sparse.translation` / `sparse.rotation` give the camera optical
frame's pose in that frame (tf convention, see `transforms.extrinsic`). They are moved into the
camera frame, projected with the CameraInfo intrinsics, and the network output at those pixels is
fitted to their depths (`robust.fit_depths`; the level set by the median over the points, see
`robust.level_to_points`). Points behind the camera or outside the image are dropped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from ..models.spec import DISPARITY
from .base import ScaleInput
from .filter import FilteredEstimator, Measurement, Rejection
from .robust import density_weights, fit_depths, level_to_points, robust_scale
from .transforms import invert, transform_points

MIN_DEPTH = 1e-3  # metres: closer than this is on (or behind) the camera
MAX_LOG_STD = 0.1  # a fit whose log(s) is less certain than this does not constrain the scale
# Points kept per message (a random subset beyond it, counted as `points_subsampled`): bounds
# the work per frame (the fit's RANSAC scores 256 hypotheses x N points) and the memory.
MAX_SPARSE_POINTS = 10_000


@dataclass
class Projection:
    u: np.ndarray  # int pixel columns
    v: np.ndarray  # int pixel rows
    z: np.ndarray  # metres along the optical axis
    behind_camera: int
    outside_image: int


def project_points(points_cam: np.ndarray, intrinsics: CameraIntrinsics) -> Projection:
    """(N, 3) camera-frame points -> nearest pixels and depths of those in front and inside the image."""
    points = np.asarray(points_cam, np.float64).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    front = points[:, 2] > MIN_DEPTH
    z = points[front, 2]
    u = np.rint(points[front, 0] / z * intrinsics.fx + intrinsics.cx)
    v = np.rint(points[front, 1] / z * intrinsics.fy + intrinsics.cy)
    inside = (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
    return Projection(
        u[inside].astype(np.int64),
        v[inside].astype(np.int64),
        z[inside],
        behind_camera=int((~front).sum()),
        outside_image=int((~inside).sum()),
    )


class SparseScale(FilteredEstimator):
    mode = "sparse"

    def __init__(
        self,
        cam_in_sparse: np.ndarray,
        min_points: int,
        min_inlier_ratio: float,
        max_age: float,
        time_constant: float,
        max_jump: float,
    ) -> None:
        super().__init__(time_constant, max_jump)
        self.sparse_to_cam = invert(cam_in_sparse)
        self.min_points = max(int(min_points), 6)
        self.min_inlier_ratio = min_inlier_ratio
        self.max_age = max_age
        self._latest: tuple[float, np.ndarray] | None = None

    def add_sparse_points(self, stamp: float, points_xyz: np.ndarray) -> None:
        """Latest metric point set, (N, 3) in the sparse frame (called from a ROS callback thread)."""
        points = np.asarray(points_xyz).reshape(-1, 3)
        if len(points) > MAX_SPARSE_POINTS:
            keep = np.random.default_rng(len(points)).choice(len(points), MAX_SPARSE_POINTS, replace=False)
            points = points[np.sort(keep)]
            self.count("points_subsampled")
        points = points.astype(np.float64)
        with self.lock:
            if self._latest is not None and stamp < self._latest[0]:
                self.counters["out_of_order"] = self.counters.get("out_of_order", 0) + 1
                return
            self._latest = (float(stamp), points)

    def clear_inputs(self, name: str = "") -> None:
        """Drop the buffered points (their time line jumped back); thread-safe."""
        with self.lock:
            self._latest = None

    def measure(self, item: ScaleInput) -> Measurement | Rejection | str | None:
        with self.lock:
            latest = self._latest
        if latest is None:
            return None
        stamp, points = latest
        if item.intrinsics is None:
            return Rejection("no_camera_info", "no CameraInfo: sparse points cannot be projected")
        if abs(item.stamp - stamp) > self.max_age:
            return Rejection("stale_points", f"sparse points are {item.stamp - stamp:.2f} s from the image")
        projection = project_points(transform_points(self.sparse_to_cam, points), item.intrinsics)
        if projection.behind_camera:
            self.count("behind_camera", projection.behind_camera)
        if projection.outside_image:
            self.count("outside_image", projection.outside_image)
        return fit_measurement(self, item, projection.u, projection.v, projection.z, "sparse points")


def fit_measurement(
    estimator: FilteredEstimator,
    item: ScaleInput,
    u: np.ndarray,
    v: np.ndarray,
    z: np.ndarray,
    what: str,
    few_reason: str = "few_points",
    balance: bool = False,
) -> Measurement | Rejection:
    """Shared by sparse and trajectory modes: fit the output at pixels (u, v) to metric depths z.

    Relative models: after the robust fit, the level is set so that the median of published /
    metric depth over the points is 1 (`robust.level_to_points`); `balance` caps the weight of
    crowded image regions (`robust.density_weights`), for points that cluster (features). Points
    outside `item.support` are not used.
    """
    if item.support is not None:
        inside = item.support[v, u]
        u, v, z = u[inside], v[inside], z[inside]
    relative = item.convention == DISPARITY
    source = item.prediction if relative or item.depth is None else item.depth
    values = source[v, u]
    usable = int(np.isfinite(values).sum())
    min_points = estimator.min_points
    if usable < min_points:
        return Rejection(few_reason, f"{usable} usable {what} (< {min_points})")
    fit = fit_depths(values, z, relative, estimator.rng)
    if relative and fit is not None and fit.log_std <= MAX_LOG_STD:
        weights = density_weights(u, v, source.shape) if balance else None
        fit.relevel(level_to_points(values, z, fit.scale, fit.shift, weights))
    min_ratio = estimator.min_inlier_ratio
    if fit is None or fit.log_std > MAX_LOG_STD:  # e.g. all points at one depth: s, t inseparable
        held = held_shift_fit(estimator, values, z, min_ratio, what) if relative else None
        if held is not None:
            return held
        if fit is None:
            return Rejection("degenerate_fit", f"no consistent fit to {usable} {what}")
        return Rejection("ill_conditioned", f"{what} do not constrain the scale (std {fit.log_std:.2f})")
    if fit.inlier_ratio < min_ratio:
        return Rejection("low_inlier_ratio", f"only {fit.inlier_ratio:.0%} of {usable} {what} agree")
    note = f"{fit.count}/{usable} {what} inliers ({fit.inlier_ratio:.0%})"
    anchor = image_anchor(item.prediction) if relative else math.nan
    return Measurement(
        fit.scale,
        fit.shift,
        fit.log_std,
        fit.inlier_ratio,
        fit.count,
        note,
        anchor,
        level_std=fit.level_std(anchor) if relative else math.nan,
    )


def image_anchor(prediction: np.ndarray) -> float:
    """The network's median output over the image: where the published depth's scale is judged.

    Innovations and fit precision are measured there, not at the fitted points: points that
    cluster at one depth pin the depth there, and say little about the rest of the image.
    """
    sample = prediction[::8, ::8]
    return float(np.median(sample[np.isfinite(sample)]))


def held_shift_fit(
    estimator: FilteredEstimator, d: np.ndarray, z: np.ndarray, min_ratio: float, what: str
) -> Measurement | None:
    """s alone, with the filter's shift ratio b held: 1/z = s (d + b), one well-conditioned unknown.

    What can still be tracked when s and t cannot be told apart: the network's frame-to-frame
    change of scale. None before the filter has a shift, or when the points disagree.
    """
    f = estimator.filter
    if not f.ready:
        return None
    shifted = np.asarray(d, np.float64) + f.shift_ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = robust_scale(np.where(shifted > 0, 1.0 / shifted, np.nan), z)  # z = (1/s) / (d + b)
    if fit is None or fit.inlier_ratio < min_ratio or fit.log_std > MAX_LOG_STD:
        return None
    scale = 1.0 / fit.scale
    note = f"{fit.count} {what} fit the scale with the shift held ({fit.inlier_ratio:.0%} inliers)"
    anchor = float(np.median(d[fit.inliers]))  # with b held, the level moves alike at every d
    return Measurement(
        scale, f.shift_ratio * scale, fit.log_std, fit.inlier_ratio, fit.count, note, anchor, True
    )
