"""Recorded test bags: castel (real SR300 frames) written as a rosbag2 bag with rosbags messages,
as a camera driver would record it (image + camera_info with the same stamp, optional sparse points)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mde_ros.bags.writer import BagWriter, qos_profile, typestore
from mde_ros.geometry.pointcloud import backproject, pack_points

START_S = 1_700_000_000  # stamps of a real recording (large seconds, nanoseconds in use)
PERIOD_NS = 100_000_000  # 10 Hz


def header(stamp_ns: int, frame_id: str = "camera_optical_frame"):
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](
        int(stamp_ns // 1_000_000_000), int(stamp_ns % 1_000_000_000)
    )
    return types["std_msgs/msg/Header"](stamp, frame_id)


def camera_info(intrinsics, hdr):
    types = typestore().types
    k = intrinsics.k_matrix().reshape(-1).astype(np.float64)
    r = np.eye(3).reshape(-1)
    p = np.array([intrinsics.fx, 0, intrinsics.cx, 0, 0, intrinsics.fy, intrinsics.cy, 0, 0, 0, 1, 0], float)
    roi = types["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
    return types["sensor_msgs/msg/CameraInfo"](
        hdr, intrinsics.height, intrinsics.width, "plumb_bob", np.zeros(5), k, r, p, 0, 0, roi
    )


def image(rgb: np.ndarray, hdr, compressed: bool):
    types = typestore().types
    if compressed:
        import cv2

        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return types["sensor_msgs/msg/CompressedImage"](hdr, "rgb8; jpeg compressed bgr8", data.reshape(-1))
    height, width = rgb.shape[:2]
    data = np.ascontiguousarray(rgb).reshape(-1)
    return types["sensor_msgs/msg/Image"](hdr, height, width, "rgb8", 0, width * 3, data)


def sparse_cloud(depth: np.ndarray, intrinsics, hdr, rng: np.random.Generator, count: int = 300):
    from mde_ros.bags.messages import cloud_message

    points = backproject(depth, intrinsics).reshape(-1, 3)
    valid = np.flatnonzero(np.isfinite(points).all(axis=1))
    chosen = rng.choice(valid, size=min(count, valid.size), replace=False)
    packed = pack_points(points[chosen][None])
    xyz = np.stack([packed["x"], packed["y"], packed["z"]], axis=-1)
    return cloud_message(xyz, None, hdr)


def record_castel(
    path: Path, frames, storage: str = "mcap", compressed: bool = False, sparse: bool = False
) -> list[int]:
    """Write `frames` (castel RgbdFrames) under /camera; returns the image stamps in ns."""
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    sensor = [qos_profile("best_effort", 5)]
    rng = np.random.default_rng(0)
    stamps = []
    with BagWriter(path, storage) as writer:
        writer.add_topic("/camera/camera_info", "sensor_msgs/msg/CameraInfo", sensor)
        writer.add_topic(topic, msgtype, sensor)
        if sparse:
            writer.add_topic("/lidar/sparse_points", "sensor_msgs/msg/PointCloud2")
        for i, frame in enumerate(frames):
            stamp = START_S * 1_000_000_000 + i * PERIOD_NS + 123
            hdr = header(stamp)
            writer.write_message("/camera/camera_info", stamp, camera_info(frame.intrinsics, hdr))
            if sparse:
                writer.write_message(
                    "/lidar/sparse_points", stamp, sparse_cloud(frame.depth, frame.intrinsics, hdr, rng)
                )
            writer.write_message(topic, stamp, image(frame.rgb, hdr, compressed))
            stamps.append(stamp)
    return stamps
