"""Subscriptions that feed the scale estimator: `odom` / `pose` (trajectory mode), `sparse_points`.

Only message -> numpy conversion happens here; validation (NaN, quaternions, stamp order) is in
the ROS-free estimators, which count every rejection for diagnostics. `feed_pose` and
`feed_sparse_points` are duck-typed (rclpy and rosbags messages alike): the node's callbacks and
`mde-ros bag` feed the estimators through the same two functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ScaleConfig


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> seconds (the one conversion the node uses)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def pose_arrays(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose -> position [x, y, z], quaternion [x, y, z, w]."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)


def feed_pose(estimator: Any, msg: Any, pose_type: str) -> bool:
    """nav_msgs/Odometry (`odom`) or geometry_msgs/PoseStamped (`pose`) -> estimator.add_pose;
    False when the estimator refused it (its reason: `estimator.last_rejection`)."""
    pose = msg.pose.pose if pose_type == "odom" else msg.pose
    return bool(estimator.add_pose(stamp_seconds(msg.header.stamp), *pose_arrays(pose)))


def feed_sparse_points(estimator: Any, msg: Any, timelines: Any = None) -> tuple[str, str] | None:
    """sensor_msgs/PointCloud2 -> estimator.add_sparse_points. A malformed or empty cloud is counted
    (the last good one is kept) and returned as (reason, message); a stamp its time line refuses
    (`mde_ros.scale.timeline`) is counted there."""
    from .pointcloud import xyz_from_cloud

    try:
        points = xyz_from_cloud(msg).reshape(-1, 3)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        estimator.count("bad_point_cloud")
        return "bad_point_cloud", f"unusable cloud ({exc})"
    if not len(points):  # e.g. an organized cloud of height 0: nothing to fit
        estimator.count("empty_point_cloud")
        return "empty_point_cloud", "empty cloud ignored"
    stamp = stamp_seconds(msg.header.stamp)
    if timelines is None or timelines.observe("sparse_points", stamp):
        estimator.add_sparse_points(stamp, points)
    return None


def attach_scale_inputs(
    node: Any, estimator: Any, config: ScaleConfig, qos: Any, timelines: Any = None, **kwargs: Any
) -> list[Any]:
    """Create the subscriptions the estimator's mode needs (relative topic names); returns them.

    Every message passes its input's time line first (`mde_ros.scale.timeline`) and its frame
    check (`ros/frames.py`); a message the estimator refuses is logged with its reason (throttled
    per reason by `node.throttle`). `kwargs` go to every create_subscription (QoS overrides).
    """
    from .frames import FrameCheck

    subscriptions = []
    if hasattr(estimator, "add_pose"):
        topic = "pose" if config.pose_type == "pose" else "odom"
        body = FrameCheck(node, estimator, "scale.extrinsic.frame", config.extrinsic.frame)
        if topic == "pose" and body.expected:  # PoseStamped names only its reference frame
            node.get_logger().warning("scale.extrinsic.frame is not checked for PoseStamped poses")

        def on_pose(msg: Any) -> None:
            if topic == "odom" and not body.accepts(msg.child_frame_id, "odom", "child_frame_id"):
                return
            stamp = stamp_seconds(msg.header.stamp)
            if timelines is not None and not timelines.observe(topic, stamp):
                return
            if not feed_pose(estimator, msg, topic):
                reason = estimator.last_rejection or "rejected"
                node.throttle.warn(f"{topic}_{reason}", f"{topic}: pose at {stamp:.3f} s refused ({reason})")

        if topic == "pose":
            from geometry_msgs.msg import PoseStamped as pose_type
        else:
            from nav_msgs.msg import Odometry as pose_type
        subscriptions.append(node.create_subscription(pose_type, topic, on_pose, qos, **kwargs))
    if hasattr(estimator, "add_sparse_points"):
        from sensor_msgs.msg import PointCloud2

        frames = FrameCheck(node, estimator, "scale.sparse.frame", config.sparse.frame)

        def on_points(msg: PointCloud2) -> None:
            if not frames.accepts(msg.header.frame_id, "sparse_points"):
                return
            problem = feed_sparse_points(estimator, msg, timelines)
            if problem:
                node.throttle.warn(problem[0], f"sparse_points: {problem[1]}")

        subscriptions.append(node.create_subscription(PointCloud2, "sparse_points", on_points, qos, **kwargs))
    return subscriptions
