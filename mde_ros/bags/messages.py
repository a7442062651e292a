"""Output messages as rosbags objects (serialised by the type store, no rclpy): the same encodings,
layouts and headers as the node's publishers."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..geometry.pointcloud import POINT_DTYPE, pack_points
from ..ros.image_conversion import ENCODINGS, HOST_IS_BIGENDIAN
from ..ros.pointcloud import point_fields
from .writer import typestore


def image_message(values: np.ndarray, encoding: str, header: Any) -> Any:
    """[H, W] / [H, W, C] array -> sensor_msgs/Image (host byte order, no row padding)."""
    dtype, channels = ENCODINGS[encoding]
    values = np.ascontiguousarray(values, dtype)
    height, width = values.shape[:2]
    data = values.view(np.uint8).reshape(-1)
    image = typestore().types["sensor_msgs/msg/Image"]
    return image(
        header, height, width, encoding, int(HOST_IS_BIGENDIAN), width * channels * dtype.itemsize, data
    )


def depth_message(depth: np.ndarray, header: Any) -> Any:
    """HxW float32 (metres, or unit-less on depth/relative) -> 32FC1 Image (REP 118)."""
    return image_message(depth, "32FC1", header)


def camera_info_message(info: Any, header: Any) -> Any:
    """The camera's CameraInfo with the depth image's header (as the node publishes it)."""
    return dataclasses.replace(info, header=header)


def cloud_message(points: np.ndarray, colors: np.ndarray | None, header: Any) -> Any:
    """[H, W, 3] xyz (+ RGB) -> organised PointCloud2 with the node's layout (x, y, z, rgb float32)."""
    packed = pack_points(points, colors)
    types = typestore().types
    cloud = types["sensor_msgs/msg/PointCloud2"]
    height, width = packed.shape
    return cloud(
        header,
        height,
        width,
        point_fields(types["sensor_msgs/msg/PointField"]),
        False,  # POINT_DTYPE is little-endian on every host
        POINT_DTYPE.itemsize,
        POINT_DTYPE.itemsize * width,
        packed.view(np.uint8).reshape(-1),
        False,  # NaN points mark invalid depth
    )
