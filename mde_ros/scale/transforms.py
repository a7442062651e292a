"""Quaternion and rigid-transform helpers (numpy, ROS-free). Quaternions are [x, y, z, w] as in ROS."""

from __future__ import annotations

import numpy as np

UNIT_TOLERANCE = 1e-2  # |‖q‖ - 1| accepted (float32 messages); larger is a broken quaternion


def is_unit_quaternion(q: np.ndarray, tolerance: float = UNIT_TOLERANCE) -> bool:
    q = np.asarray(q, np.float64)
    return q.shape == (4,) and bool(np.all(np.isfinite(q))) and abs(np.linalg.norm(q) - 1.0) <= tolerance


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[x, y, z, w] (normalised here) -> 3x3 rotation matrix."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation -> [x, y, z, w] with w >= 0 (Shepperd's method, stable for every angle)."""
    m = np.asarray(rotation, np.float64)
    trace = np.trace(m)
    if trace > 0:
        k = 2.0 * np.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / k, (m[0, 2] - m[2, 0]) / k, (m[1, 0] - m[0, 1]) / k, k / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k_ = (i + 1) % 3, (i + 2) % 3
        k = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k_, k_])
        q = [0.0, 0.0, 0.0, (m[k_, j] - m[j, k_]) / k]
        q[i] = k / 4
        q[j] = (m[j, i] + m[i, j]) / k
        q[k_] = (m[k_, i] + m[i, k_]) / k
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc."""
    q0 = np.asarray(q0, np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, np.float64) / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0:  # q and -q are the same rotation: take the short way
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp avoids dividing by sin(~0)
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / np.sin(theta)


def pose_matrix(position: np.ndarray, quaternion_xyzw: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a translation and an [x, y, z, w] rotation."""
    transform = np.eye(4)
    transform[:3, :3] = quat_to_matrix(quaternion_xyzw)
    transform[:3, 3] = np.asarray(position, np.float64)
    return transform


def invert(transform: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (transpose, no general matrix inverse)."""
    inverse = np.eye(4)
    rotation = transform[:3, :3]
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ transform[:3, 3]
    return inverse


def extrinsic(translation: list[float] | np.ndarray, rotation_xyzw: list[float] | np.ndarray) -> np.ndarray:
    """Pose of the camera optical frame in a parent frame (tf convention: parent -> child).

    This is what `static_transform_publisher --frame-id PARENT --child-frame-id CAMERA_OPTICAL`
    takes; a point p in the camera frame is `T @ p` in the parent frame. Raises on a broken one.
    """
    translation = np.asarray(translation, np.float64).reshape(-1)
    rotation = np.asarray(rotation_xyzw, np.float64).reshape(-1)
    if translation.shape != (3,) or not np.all(np.isfinite(translation)):
        raise ValueError(f"extrinsic translation must be 3 finite numbers, got {translation.tolist()}")
    if not is_unit_quaternion(rotation):
        raise ValueError(f"extrinsic rotation must be a unit quaternion [x,y,z,w], got {rotation.tolist()}")
    return pose_matrix(translation, rotation)


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points."""
    return points @ transform[:3, :3].T + transform[:3, 3]
