"""Publishes a recorded RGB-D sequence as a camera would: `image` + `camera_info`, same stamp."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..geometry.intrinsics import CameraIntrinsics
from ..geometry.pointcloud import backproject, pack_points
from .image_conversion import image_msg
from .pointcloud import cloud_msg


def camera_info_msg(intrinsics: CameraIntrinsics, header=None) -> CameraInfo:
    """A distortion-free CameraInfo for `intrinsics` (K, R = identity, P = [K | 0])."""
    info = CameraInfo()
    if header is not None:
        info.header = header
    info.width, info.height = intrinsics.width, intrinsics.height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = intrinsics.k_matrix().reshape(-1).tolist()
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.p = [intrinsics.fx, 0, intrinsics.cx, 0, 0, intrinsics.fy, intrinsics.cy, 0, 0, 0, 1.0, 0]
    return info


class SamplePlayer(Node):
    """Plays `images` (mono8 or rgb8 arrays) at `rate_hz`, looping `loops` times.

    With `depths`, it also publishes `sparse_points`: `sparse_count` random valid pixels of the
    metric depth, as a sparse LiDAR or SLAM map would give them (for `scale.mode: sparse`).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        intrinsics: CameraIntrinsics,
        rate_hz: float = 5.0,
        loops: int = 1,
        frame_id: str = "camera_optical_frame",
        depths: Sequence[np.ndarray] | None = None,
        sparse_count: int = 300,
    ) -> None:
        super().__init__("sample_camera")
        self.images, self.intrinsics, self.frame_id = list(images), intrinsics, frame_id
        self.depths, self.sparse_count = depths, sparse_count
        self.rng = np.random.default_rng(0)
        self.sparse_pub = self.create_publisher(PointCloud2, "sparse_points", 10) if depths else None
        self.total = len(self.images) * loops
        self.sent = 0
        # Reliable so that a short demo loses nothing; the node's input QoS (best effort) matches it.
        self.image_pub = self.create_publisher(Image, "image", 10)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.timer = self.create_timer(1.0 / rate_hz, self._tick)

    @property
    def done(self) -> bool:
        return self.sent >= self.total

    def _tick(self) -> None:
        if self.done:
            self.timer.cancel()
            return
        image = self.images[self.sent % len(self.images)]
        encoding = "mono8" if image.ndim == 2 else "rgb8"
        msg = image_msg(image, encoding)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        self.info_pub.publish(camera_info_msg(self.intrinsics, msg.header))
        if self.sparse_pub is not None:
            self.sparse_pub.publish(self._sparse_cloud(self.depths[self.sent % len(self.depths)], msg.header))
        self.image_pub.publish(msg)
        self.sent += 1

    def _sparse_cloud(self, depth: np.ndarray, header) -> PointCloud2:
        points = backproject(depth, self.intrinsics).reshape(-1, 3)
        valid = np.flatnonzero(np.isfinite(points).all(axis=1))
        chosen = self.rng.choice(valid, size=min(self.sparse_count, valid.size), replace=False)
        return cloud_msg(pack_points(points[chosen][None]), header)
