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


def feed_pose(estimator: Any, msg: Any, pose_type: str) -> None:
    """nav_msgs/Odometry (`odom`) or geometry_msgs/PoseStamped (`pose`) -> estimator.add_pose."""
    pose = msg.pose.pose if pose_type == "odom" else msg.pose
    estimator.add_pose(stamp_seconds(msg.header.stamp), *pose_arrays(pose))


def feed_sparse_points(estimator: Any, msg: Any) -> str | None:
    """sensor_msgs/PointCloud2 -> estimator.add_sparse_points; a malformed cloud is counted
    (the last good one is kept) and its problem returned."""
    from .pointcloud import xyz_from_cloud

    try:
        points = xyz_from_cloud(msg).reshape(-1, 3)
    except (ValueError, KeyError, IndexError) as exc:
        estimator.count("bad_point_cloud")
        return str(exc)
    estimator.add_sparse_points(stamp_seconds(msg.header.stamp), points)
    return None


def attach_scale_inputs(node: Any, estimator: Any, config: ScaleConfig, qos: Any, **kwargs: Any) -> list[Any]:
    """Create the subscriptions the estimator's mode needs (relative topic names); returns them.
    `kwargs` go to every create_subscription (e.g. QoS overriding options)."""
    from .frames import FrameCheck

    subscriptions = []
    if hasattr(estimator, "add_pose"):
        body = FrameCheck(node, estimator, "scale.extrinsic.frame", config.extrinsic.frame)
        if config.pose_type == "pose":
            if body.expected:  # PoseStamped names only the frame it is expressed in, not the body
                node.get_logger().warning("scale.extrinsic.frame is not checked for PoseStamped poses")
            from geometry_msgs.msg import PoseStamped

            def on_pose(msg: PoseStamped) -> None:
                feed_pose(estimator, msg, "pose")

            subscriptions.append(node.create_subscription(PoseStamped, "pose", on_pose, qos, **kwargs))
        else:
            from nav_msgs.msg import Odometry

            def on_odom(msg: Odometry) -> None:
                if body.accepts(msg.child_frame_id, "odom", "child_frame_id"):
                    feed_pose(estimator, msg, "odom")

            subscriptions.append(node.create_subscription(Odometry, "odom", on_odom, qos, **kwargs))
    if hasattr(estimator, "add_sparse_points"):
        from sensor_msgs.msg import PointCloud2

        frames = FrameCheck(node, estimator, "scale.sparse.frame", config.sparse.frame)

        def on_points(msg: PointCloud2) -> None:
            if not frames.accepts(msg.header.frame_id, "sparse_points"):
                return
            problem = feed_sparse_points(estimator, msg)
            if problem:
                node.get_logger().warning(f"sparse_points: {problem}", throttle_duration_sec=5.0)

        subscriptions.append(node.create_subscription(PointCloud2, "sparse_points", on_points, qos, **kwargs))
    return subscriptions
