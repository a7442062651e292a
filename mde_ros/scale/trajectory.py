"""`scale.mode: trajectory`: metric camera motion from an odometry / SLAM pose topic.

Poses are buffered and interpolated to each image stamp (linear position, slerp rotation). The
camera pose is `pose @ extrinsic` (extrinsic = camera optical frame in the pose frame). Between a
keyframe and the current frame (at least `min_baseline` apart), ORB features are matched,
triangulated with the metric relative pose, filtered by cheirality, parallax and reprojection
error, and the network output at the current pixels is fitted to their depths, together with the
latest earlier triangulated points (`MAX_LANDMARKS`, kept in the world frame) moved into the
current view with its pose: they cover more of the image than one frame pair's matches. Features
cluster where the image is textured, so a crowded image region counts only so much when the fit's
level is set (`robust.density_weights`). While the baseline is too short to
triangulate, those points alone keep the fit going, so the scale follows the network's
frame-to-frame changes instead of holding a stale (s, t).

A monocular SLAM trajectory is itself only up to scale: the depth then comes out in the
trajectory's units, consistent over time, not in metres.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from .base import ScaleInput
from .filter import FilteredEstimator, Measurement, Rejection
from .sparse import fit_measurement, project_points
from .stabiliser import DepthStabiliser
from .transforms import UNIT_TOLERANCE, invert, pose_matrix, slerp, transform_points

EXACT_STAMP = 1e-6  # seconds: an image stamp this close to a pose stamp uses that pose as is
MIN_PARALLAX_DEG = 0.3  # rays closer than this to parallel give no usable depth
MAX_LANDMARKS = 300  # latest triangulated points kept (world frame) to fit later views with


class PoseBuffer:
    """Time-ordered poses with validation and interpolation (not thread-safe: the owner locks)."""

    def __init__(self, max_gap: float, capacity: int = 4000) -> None:
        self.max_gap = max_gap
        self.capacity = capacity
        self.stamps: list[float] = []
        self.positions: list[np.ndarray] = []
        self.quaternions: list[np.ndarray] = []

    def add(self, stamp: float, position: np.ndarray, quaternion_xyzw: np.ndarray) -> str | None:
        """Store a pose; returns the rejection reason (counter key) or None."""
        position = np.asarray(position, np.float64).reshape(-1)
        quaternion = np.asarray(quaternion_xyzw, np.float64).reshape(-1)
        if (
            not math.isfinite(stamp)
            or position.shape != (3,)
            or quaternion.shape != (4,)
            or not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion)))
        ):
            return "nan_pose"
        if abs(np.linalg.norm(quaternion) - 1.0) > UNIT_TOLERANCE:
            return "non_unit_quaternion"
        if self.stamps:
            if abs(stamp - self.stamps[-1]) <= EXACT_STAMP:
                return "duplicate_stamp"
            if stamp < self.stamps[-1]:
                return "out_of_order"
        self.stamps.append(float(stamp))
        self.positions.append(position)
        self.quaternions.append(quaternion / np.linalg.norm(quaternion))
        if len(self.stamps) > self.capacity:
            del self.stamps[0], self.positions[0], self.quaternions[0]
        return None

    def lookup(self, stamp: float) -> tuple[np.ndarray | None, str]:
        """4x4 pose at `stamp`, or (None, reason message) when no pose brackets it closely enough."""
        if not self.stamps:
            return None, "no pose received yet"
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and abs(self.stamps[i] - stamp) <= EXACT_STAMP:
            return pose_matrix(self.positions[i], self.quaternions[i]), ""
        if i > 0 and abs(self.stamps[i - 1] - stamp) <= EXACT_STAMP:
            return pose_matrix(self.positions[i - 1], self.quaternions[i - 1]), ""
        if i == 0 or i == len(self.stamps):
            side = "before the first" if i == 0 else "after the latest"
            span = f"{self.stamps[0]:.3f}..{self.stamps[-1]:.3f}"
            return None, f"image stamp {stamp:.3f} is {side} pose ({span})"
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if t1 - t0 > self.max_gap:
            return None, f"poses around the image are {t1 - t0:.3f} s apart (> scale.max_pose_gap)"
        alpha = (stamp - t0) / (t1 - t0)
        position = (1 - alpha) * self.positions[i - 1] + alpha * self.positions[i]
        return pose_matrix(position, slerp(self.quaternions[i - 1], self.quaternions[i], alpha)), ""


@dataclass
class Keyframe:
    pose: np.ndarray  # 4x4 camera optical frame in the world (pose) frame
    points: np.ndarray  # (N, 2) float32 keypoint pixels
    descriptors: np.ndarray | None


class TrajectoryScale(FilteredEstimator):
    mode = "trajectory"

    def __init__(
        self,
        cam_in_pose: np.ndarray,
        max_pose_gap: float,
        min_baseline: float,
        min_matches: int,
        min_inlier_ratio: float,
        time_constant: float,
        max_jump: float,
        max_reprojection_px: float = 2.0,
        features: int = 1000,
        stabiliser: DepthStabiliser | None = None,
    ) -> None:
        super().__init__(time_constant, max_jump)
        self.cam_in_pose = cam_in_pose
        self.poses = PoseBuffer(max_pose_gap)
        self.min_baseline = min_baseline
        self.min_matches = max(int(min_matches), 6)
        self.min_points = self.min_matches
        self.min_inlier_ratio = min_inlier_ratio
        self.max_reprojection_px = max_reprojection_px
        self.orb = cv2.ORB_create(nfeatures=features)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.keyframe: Keyframe | None = None
        self.landmarks: np.ndarray | None = None  # (N, 3) world points of the latest accepted fits
        self.last_rejection: str | None = None  # reason of the latest add_pose refusal, for logs
        self.stabiliser = stabiliser  # scale.stabilise: blends the published depth along the poses

    def add_pose(self, stamp: float, position: np.ndarray, quaternion_xyzw: np.ndarray) -> bool:
        """Buffer one pose of the pose frame in the world (called from a ROS callback thread)."""
        with self.lock:
            reason = self.poses.add(stamp, position, quaternion_xyzw)
            if reason:
                self.counters[reason] = self.counters.get(reason, 0) + 1
            self.last_rejection = reason
        return reason is None

    def clear_inputs(self, name: str = "") -> None:
        """Drop the buffered poses (their time line jumped back); thread-safe."""
        with self.lock:
            self.poses = PoseBuffer(self.poses.max_gap, self.poses.capacity)

    def measure(self, item: ScaleInput) -> Measurement | Rejection | str | None:
        if item.intrinsics is None:
            return Rejection("no_camera_info", "no CameraInfo: cannot triangulate")
        with self.lock:
            pose, why = self.poses.lookup(item.stamp)
        if pose is None:
            return Rejection("pose_gap", why)
        pose = pose @ self.cam_in_pose
        grey = cv2.cvtColor(item.rgb, cv2.COLOR_RGB2GRAY) if item.rgb.ndim == 3 else item.rgb
        keypoints, descriptors = self.orb.detectAndCompute(grey, None)
        current = Keyframe(pose, np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2), descriptors)
        if self.keyframe is None:
            self.keyframe = current
            return "first keyframe stored, waiting for baseline"
        baseline = float(np.linalg.norm(pose[:3, 3] - self.keyframe.pose[:3, 3]))
        if baseline < self.min_baseline:
            tracked = self._track_landmarks(item, pose)
            if tracked is not None:
                return tracked
            return Rejection("zero_baseline", f"baseline {baseline:.3f} m < scale.min_baseline")
        kf_px, cur_px = self._match(self.keyframe, current)
        if len(cur_px) < self.min_matches:
            self.keyframe = current  # the view changed too much: start again from here
            return Rejection("few_matches", f"{len(cur_px)} feature matches (< scale.min_matches)")
        u, v, z, dropped = triangulate(
            self.keyframe.pose, pose, kf_px, cur_px, item.intrinsics, self.max_reprojection_px
        )
        for reason, amount in dropped.items():
            if amount:
                self.count(reason, amount)
        if len(cur_px) < 2 * self.min_matches:
            self.keyframe = current  # overlap is running out: the next pairs use this frame
        fresh = pose_points(pose, u, v, z, item.intrinsics)
        if self.landmarks is not None:  # earlier points, moved into this view, cover more of it
            old = project_points(transform_points(invert(pose), self.landmarks), item.intrinsics)
            u, v, z = np.concatenate([u, old.u]), np.concatenate([v, old.v]), np.concatenate([z, old.z])
        result = fit_measurement(self, item, u, v, z, "triangulated matches", "few_matches", balance=True)
        if isinstance(result, Measurement):
            result.note += f", baseline {baseline:.3f} m"
            kept = self.landmarks if self.landmarks is not None else fresh[:0]
            self.landmarks = np.concatenate([kept, fresh])[-MAX_LANDMARKS:]
        return result

    def _track_landmarks(self, item: ScaleInput, pose: np.ndarray) -> Measurement | None:
        """While the baseline is too short to triangulate: the last triangulated points, moved into
        the current view with the metric pose, still give metric depths to fit the network to (so
        the scale follows the network's frame-to-frame changes instead of holding a stale pair)."""
        if self.landmarks is None:
            return None
        projection = project_points(transform_points(invert(pose), self.landmarks), item.intrinsics)
        result = fit_measurement(
            self, item, projection.u, projection.v, projection.z, "tracked landmarks", balance=True
        )
        return result if isinstance(result, Measurement) else None

    def _match(self, a: Keyframe, b: Keyframe) -> tuple[np.ndarray, np.ndarray]:
        """Mutually consistent ORB matches passing Lowe's ratio test, as pixel arrays."""
        if a.descriptors is None or b.descriptors is None or len(a.points) < 2 or len(b.points) < 2:
            return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
        pairs = self.matcher.knnMatch(a.descriptors, b.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        query = np.array([m.queryIdx for m in good], np.int64)
        train = np.array([m.trainIdx for m in good], np.int64)
        _, first = np.unique(train, return_index=True)  # one keyframe feature per current feature
        return a.points[query[first]], b.points[train[first]]

    def stabilise(self, depth: np.ndarray, intrinsics: CameraIntrinsics | None, stamp: float) -> np.ndarray:
        """With `scale.stabilise`: blend in the previous published depth, moved into this view with
        the odometry pose at `stamp` (no pose: this frame's depth alone, and the blend restarts)."""
        if self.stabiliser is None or intrinsics is None:
            return depth
        with self.lock:
            pose, _ = self.poses.lookup(stamp)
        return self.stabiliser.apply(depth, intrinsics, None if pose is None else pose @ self.cam_in_pose)

    def reset(self) -> None:
        super().reset()
        self.keyframe = None  # its pose belongs to the old time line
        self.landmarks = None
        if self.stabiliser is not None:
            self.stabiliser.reset()


def pose_points(
    pose: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray, intrinsics: CameraIntrinsics
) -> np.ndarray:
    """Pixels (u, v) at depths z of a camera at `pose` -> (N, 3) points in the pose's world frame."""
    x = (u - intrinsics.cx) * z / intrinsics.fx
    y = (v - intrinsics.cy) * z / intrinsics.fy
    return transform_points(pose, np.stack([x, y, z], axis=1))


def triangulate(
    pose_a: np.ndarray,
    pose_b: np.ndarray,
    px_a: np.ndarray,
    px_b: np.ndarray,
    intrinsics: CameraIntrinsics,
    max_reprojection_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Matched pixels of two metric camera poses -> current pixels (u, v) and metric depths in b."""
    k = intrinsics.k_matrix()
    b_from_a = invert(pose_b) @ pose_a
    proj_a = k @ np.eye(3, 4)
    proj_b = k @ b_from_a[:3]
    homogeneous = cv2.triangulatePoints(proj_a, proj_b, px_a.T.astype(np.float64), px_b.T.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        xa = (homogeneous[:3] / homogeneous[3]).T
    xb = xa @ b_from_a[:3, :3].T + b_from_a[:3, 3]
    finite = np.all(np.isfinite(xa), axis=1)
    front = finite & (xa[:, 2] > 0) & (xb[:, 2] > 0)
    error = np.maximum(_reprojection(xa, px_a, k), _reprojection(xb, px_b, k))
    accurate = front & (error <= max_reprojection_px)
    # Parallax between the two viewing rays: near-parallel rays give depth from noise.
    ray_b = xa - invert(b_from_a)[:3, 3]  # camera a sits at the origin: its ray is xa itself
    cos = np.einsum("ij,ij->i", xa, ray_b) / (
        np.linalg.norm(xa, axis=1) * np.linalg.norm(ray_b, axis=1) + 1e-12
    )
    parallax = accurate & (cos < math.cos(math.radians(MIN_PARALLAX_DEG)))
    inside = parallax & (px_b[:, 0] >= 0) & (px_b[:, 0] < intrinsics.width - 0.5)
    inside &= (px_b[:, 1] >= 0) & (px_b[:, 1] < intrinsics.height - 0.5)
    u = np.rint(px_b[inside, 0]).astype(np.int64)
    v = np.rint(px_b[inside, 1]).astype(np.int64)
    dropped = {
        "behind_camera": int((finite & ~front).sum()),
        "reprojection_error": int((front & ~accurate).sum()),
        "low_parallax": int((accurate & ~parallax).sum()),
    }
    return u, v, xb[inside, 2], dropped


def _reprojection(points: np.ndarray, pixels: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        projected = points @ k.T
        projected = projected[:, :2] / projected[:, 2:3]
    error = np.linalg.norm(projected - pixels, axis=1)
    return np.where(np.isfinite(error), error, np.inf)
