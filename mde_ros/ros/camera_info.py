"""sensor_msgs/CameraInfo -> CameraIntrinsics, duck-typed (rclpy and rosbags messages alike): the
node and `mde-ros bag` reject unusable CameraInfo under the same counted reasons."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from ..geometry.intrinsics import CameraIntrinsics
from .image_conversion import ImageInputError


def intrinsics_from_info(info: Any) -> CameraIntrinsics:
    """Pinhole intrinsics from P (K only when P is all zero); ImageInputError("camera_info_invalid")
    when unusable."""
    try:
        return CameraIntrinsics.from_camera_info(info.k, info.p, info.width, info.height).validate()
    except InvalidInputError as exc:
        raise ImageInputError("camera_info_invalid", f"CameraInfo is unusable: {exc}") from exc


def check_image_size(intrinsics: CameraIntrinsics, width: int, height: int) -> CameraIntrinsics:
    """`intrinsics` when they describe a width x height image, else ImageInputError."""
    if not intrinsics.matches(width, height):
        raise ImageInputError(
            "camera_info_size_mismatch",
            f"CameraInfo is {intrinsics.width}x{intrinsics.height} but the image is {width}x{height}",
        )
    return intrinsics
