"""Optional temporal depth stabiliser using odometry (measured by `mde-ros eval-scale --stabilise`).

The previous stabilised depth is moved into the current view with the camera's metric motion
(forward-warped: back-projected, transformed, projected, nearest pixel, closest point wins) and
blended into the current depth where the two agree within `agreement` (elsewhere - disocclusions,
moving objects, a wrong pose - the current depth stands alone): a recursive average along the
camera's motion, which damps frame-to-frame flicker of the network's output and of its scale.
The node applies it in trajectory mode with `scale.stabilise` > 0 (off by default), with the
odometry poses the scale estimator buffers (`TrajectoryScale.stabilise`).
"""

from __future__ import annotations

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics


def forward_warp(depth: np.ndarray, cur_from_prev: np.ndarray, k: CameraIntrinsics) -> np.ndarray:
    """`depth` of the previous view as seen from the current one (NaN where nothing lands)."""
    rows, cols = depth.shape
    v, u = np.mgrid[0:rows, 0:cols]
    z = depth.astype(np.float64).reshape(-1)
    points = np.stack([(u.reshape(-1) - k.cx) * z / k.fx, (v.reshape(-1) - k.cy) * z / k.fy, z], axis=1)
    moved = points @ cur_from_prev[:3, :3].T + cur_from_prev[:3, 3]
    zc = moved[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uc = np.rint(moved[:, 0] / zc * k.fx + k.cx)
        vc = np.rint(moved[:, 1] / zc * k.fy + k.cy)
    ok = np.isfinite(zc) & (zc > 0) & (uc >= 0) & (uc < cols) & (vc >= 0) & (vc < rows)
    out = np.full(rows * cols, np.inf)
    np.minimum.at(out, vc[ok].astype(np.int64) * cols + uc[ok].astype(np.int64), zc[ok])
    out[np.isinf(out)] = np.nan
    return out.reshape(rows, cols)


class DepthStabiliser:
    def __init__(self, weight: float = 0.7, agreement: float = 0.1) -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"stabiliser weight must be in [0, 1), got {weight}")
        self.weight = weight
        self.agreement = agreement
        self.reset()

    def reset(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (depth, camera pose in world)

    def apply(self, depth: np.ndarray, k: CameraIntrinsics, cam_in_world: np.ndarray | None) -> np.ndarray:
        """Stabilised metric depth of this frame; `cam_in_world` None (no odometry) resets."""
        if cam_in_world is None:
            self.reset()
            return depth
        out = depth
        if self._previous is not None and self.weight > 0:
            prev_depth, prev_pose = self._previous
            warped = forward_warp(prev_depth, np.linalg.inv(cam_in_world) @ prev_pose, k)
            with np.errstate(invalid="ignore", divide="ignore"):
                agree = (
                    np.isfinite(warped) & np.isfinite(depth) & (np.abs(warped / depth - 1) < self.agreement)
                )
            out = np.where(agree, (1 - self.weight) * depth + self.weight * warped, depth).astype(depth.dtype)
        self._previous = (out, cam_in_world)
        return out
