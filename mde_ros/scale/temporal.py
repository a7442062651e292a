"""Temporal consistency of published depth on a sequence with ground-truth poses.

The previous frame's published depth is back-projected, moved into the current camera with the
ground-truth relative pose and compared with the current published depth where it lands: the
temporal alignment error video-depth papers report, mean |z_warped - z_current| / z_current.
Only pixels seen in both frames count (co-visible by the ground truth: the ground-truth depth,
warped the same way, agrees with the current ground truth there), so occlusions and pixels leaving
the view are not blamed on the depth. A perfectly consistent depth scores the warp's own
resampling error (nearest pixel), which `floor` gives from the ground truth itself.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics

COVISIBLE_TOLERANCE = 0.03  # relative ground-truth disagreement beyond which a pixel is occluded


def _warp(depth: np.ndarray, cur_from_prev: np.ndarray, k: CameraIntrinsics, stride: int):
    """Pixels of `depth` (every `stride`), moved into the current camera: (u, v, z) there, valid mask."""
    v, u = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=-1)
    moved = points @ cur_from_prev[:3, :3].T + cur_from_prev[:3, 3]
    zc = moved[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uc = np.rint(moved[..., 0] / zc * k.fx + k.cx)
        vc = np.rint(moved[..., 1] / zc * k.fy + k.cy)
    ok = np.isfinite(zc) & (zc > 0) & np.isfinite(uc) & np.isfinite(vc)
    ok &= (uc >= 0) & (uc < depth.shape[1]) & (vc >= 0) & (vc < depth.shape[0])
    return np.where(ok, uc, 0).astype(np.int64), np.where(ok, vc, 0).astype(np.int64), zc, ok


def covisible(
    prev_truth: np.ndarray, truth: np.ndarray, cur_from_prev: np.ndarray, k: CameraIntrinsics, stride: int
):
    """Mask (on the strided grid of the previous frame) of points seen in both frames."""
    u, v, z, ok = _warp(prev_truth, cur_from_prev, k, stride)
    there = truth[v, u]
    with np.errstate(invalid="ignore"):
        return ok & np.isfinite(there) & (np.abs(z - there) <= COVISIBLE_TOLERANCE * there)


def alignment_error(
    prev_depth: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray,
    cur_from_prev: np.ndarray,
    k: CameraIntrinsics,
    stride: int,
) -> float:
    """Mean |z_warped - z| / z of the previous depth warped into the current one, on `mask`."""
    u, v, z, ok = _warp(prev_depth, cur_from_prev, k, stride)
    there = depth[v, u].astype(np.float64)
    ok &= mask & np.isfinite(there) & (there > 0)
    return float(np.mean(np.abs(z[ok] - there[ok]) / there[ok])) if ok.any() else math.nan


class TemporalMeter:
    """Temporal alignment error of consecutive published depth images (frames need `pose_cam_obj`)."""

    def __init__(self, stride: int = 4) -> None:
        self.stride = stride
        self.errors: list[float] = []
        self.floor: list[float] = []  # the ground truth's own score: the warp's resampling error
        self._previous = None

    def add(self, frame, depth: np.ndarray | None) -> None:
        """Next frame (with depth, intrinsics, pose_cam_obj) and its published depth (None: not metric)."""
        previous, self._previous = self._previous, (frame, depth)
        if previous is None or depth is None or previous[1] is None or frame.pose_cam_obj is None:
            return
        prev_frame, prev_depth = previous
        cur_from_prev = frame.pose_cam_obj @ np.linalg.inv(prev_frame.pose_cam_obj)
        k, s = frame.intrinsics, self.stride
        mask = covisible(prev_frame.depth, frame.depth, cur_from_prev, k, s)
        self.errors.append(alignment_error(prev_depth, depth, mask, cur_from_prev, k, s))
        self.floor.append(alignment_error(prev_frame.depth, frame.depth, mask, cur_from_prev, k, s))

    def summary(self) -> dict[str, float]:
        if not self.errors:
            return {"temporal_error": math.nan, "temporal_floor": math.nan}
        return {
            "temporal_error": float(np.nanmean(self.errors)),
            "temporal_floor": float(np.nanmean(self.floor)),
        }
