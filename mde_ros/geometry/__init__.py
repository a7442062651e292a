"""Camera geometry: intrinsics, back-projection, point cloud layout (ROS-free)."""

from .intrinsics import CameraIntrinsics
from .pointcloud import POINT_DTYPE, backproject, pack_points

__all__ = ["POINT_DTYPE", "CameraIntrinsics", "backproject", "pack_points"]
