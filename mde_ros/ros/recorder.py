"""Records what the depth node publishes: a rosbag2 bag (MCAP storage, metadata.yaml and the
publishers' QoS profiles; `ros2 bag play`, Foxglove and `mde-ros bag` read it), colorized depth PNGs,
the last point cloud as PLY, and summary figures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from ..bags.writer import BagWriter, qos_profile

# topic -> ROS type name (relative topics resolve in the recorder's namespace, like the node's).
RECORDED = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "sparse_points": "sensor_msgs/msg/PointCloud2",  # scale input: `mde-ros bag` can replay the demo
    "depth/image": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "depth/colorized": "sensor_msgs/msg/Image",
    "depth/relative": "sensor_msgs/msg/Image",
    "depth/points": "sensor_msgs/msg/PointCloud2",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def _message_class(type_name: str):
    """`pkg/msg/Type` -> the generated Python class (rosidl_runtime_py is not on PyPI)."""
    import importlib

    package, _, name = type_name.rpartition("/")
    return getattr(importlib.import_module(package.replace("/", ".")), name)


@dataclass
class RecordingStats:
    counts: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    depth_ranges: list[tuple[float, float, float]] = field(default_factory=list)  # min, median, max
    last_diagnostics: dict[str, str] = field(default_factory=dict)


class Recorder(Node):
    def __init__(self, output: Path, max_pngs: int = 30) -> None:
        super().__init__("mde_ros_recorder")
        self.output = output
        output.mkdir(parents=True, exist_ok=True)
        (output / "colorized").mkdir(exist_ok=True)
        self.max_pngs = max_pngs
        self.stats = RecordingStats()
        # Uncompressed: a 640x480 stream is ~35 MB/s of clouds and images, and a recorder that
        # falls behind makes reliable writers replace unacknowledged samples.
        self.bag_path = output / "bag"
        self.writer = BagWriter(self.bag_path, "mcap", overwrite=True)
        self.last_cloud = None
        # Best effort takes messages from reliable and best-effort publishers alike (cameras often
        # publish camera_info best effort); the node's outputs are reliable by default.
        inputs = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
        outputs = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic, type_name in RECORDED.items():
            qos = inputs if topic in ("image", "camera_info", "sparse_points") else outputs
            self.stats.counts[topic] = 0
            self.create_subscription(
                _message_class(type_name),
                topic,
                lambda data, t=topic: self._on_message(t, data),
                qos,
                raw=True,
            )

    def _on_message(self, topic: str, data: bytes) -> None:
        now = time.time_ns()
        count = self.stats.counts[topic]
        self.stats.counts[topic] = count + 1
        resolved = self.resolve_topic_name(topic)
        if not self.writer.has_topic(resolved):  # first message: the publisher's QoS is known now
            self.writer.add_topic(resolved, RECORDED[topic], self._offered_qos(resolved))
        self.writer.write(resolved, now, data)
        if topic == "depth/image":
            self._on_depth(deserialize_message(data, _message_class(RECORDED[topic])), now)
        elif topic == "depth/colorized" and count < self.max_pngs:
            self._save_png(deserialize_message(data, _message_class(RECORDED[topic])), count)
        elif topic == "depth/points":
            self.last_cloud = data
        elif topic == "/diagnostics":
            self._on_diagnostics(deserialize_message(data, _message_class(RECORDED[topic])))

    def _offered_qos(self, topic: str) -> list:
        """The publishers' QoS as rosbag2 records it (`ros2 bag play` republishes with it)."""
        return [
            qos_profile(q.reliability.name, q.depth, q.durability.name, q.history.name)
            for q in (info.qos_profile for info in self.get_publishers_info_by_topic(topic))
        ]

    def _on_depth(self, msg, now_ns: int) -> None:
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.stats.latencies_ms.append((now_ns - stamp_ns) / 1e6)
        depth = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)
        finite = depth[np.isfinite(depth)]
        if finite.size:
            self.stats.depth_ranges.append(
                (float(finite.min()), float(np.median(finite)), float(finite.max()))
            )

    def _save_png(self, msg, index: int) -> None:
        import cv2

        bgr = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
        cv2.imwrite(
            str(self.output / "colorized" / f"depth_{index:04d}.png"), bgr.reshape(msg.height, msg.width, 3)
        )

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            for kv in status.values:
                self.stats.last_diagnostics[f"{status.name}/{kv.key}"] = kv.value

    def finish(self) -> Path | None:
        """Close the bag and write the last cloud as PLY; returns the PLY path if any."""
        self.writer.close()
        if self.last_cloud is None:
            return None
        from ..geometry.ply import write_ply
        from .pointcloud import cloud_array, unpack_rgb, xyz_from_cloud

        cloud = deserialize_message(self.last_cloud, _message_class(RECORDED["depth/points"]))
        path = self.output / "last_cloud.ply"
        write_ply(path, xyz_from_cloud(cloud), unpack_rgb(cloud_array(cloud)["rgb"]))
        return path
