"""Pinhole intrinsics (from sensor_msgs/CameraInfo's P, or K), validated and rescalable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: np.ndarray | list[float], width: int, height: int) -> CameraIntrinsics:
        """From a row-major 3x3 K (CameraInfo.k)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise InvalidInputError(f"K must have 9 elements, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    @classmethod
    def from_camera_info(
        cls, k: np.ndarray | list[float], p: np.ndarray | list[float], width: int, height: int
    ) -> CameraIntrinsics:
        """From CameraInfo: P, the camera of the rectified image (image_geometry's fx() = P[0],
        cx() = P[2], fy() = P[5], cy() = P[6]); K only when P is all zero (a driver that fills K)."""
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        if p.size != 12:
            raise InvalidInputError(f"P must have 12 elements, got {p.size}")
        if not p.any():
            return cls.from_k(k, width, height)
        return cls(float(p[0]), float(p[5]), float(p[2]), float(p[6]), int(width), int(height))

    def validate(self) -> CameraIntrinsics:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise InvalidInputError(f"camera intrinsics are not finite: {values}")
        if self.fx <= 0 or self.fy <= 0:
            raise InvalidInputError(f"camera focal lengths must be positive (fx={self.fx}, fy={self.fy})")
        if self.width <= 0 or self.height <= 0:
            raise InvalidInputError(f"camera size must be positive ({self.width}x{self.height})")
        return self

    def matches(self, width: int, height: int) -> bool:
        return (self.width, self.height) == (width, height)

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        """The same camera seen at another resolution (pixel-centre convention of OpenCV/ROS)."""
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
        )

    def strided(self, stride: int) -> CameraIntrinsics:
        """Intrinsics of the image sampled at every `stride`-th row and column (starting at 0)."""
        if stride == 1:
            return self
        width = (self.width + stride - 1) // stride
        height = (self.height + stride - 1) // stride
        return CameraIntrinsics(
            self.fx / stride, self.fy / stride, self.cx / stride, self.cy / stride, width, height
        )

    def k_matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)
