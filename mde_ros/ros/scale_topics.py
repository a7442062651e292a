"""Subscriptions that feed the scale estimator: `odom` / `pose` (trajectory mode), `sparse_points`.

Only message -> numpy conversion happens here; validation (NaN, quaternions, stamp order) is in
the ROS-free estimators, which count every rejection for diagnostics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..scale.factory import DEFAULTS, flatten
from .frames import FrameCheck


def stamp_seconds(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def pose_arrays(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose -> position [x, y, z], quaternion [x, y, z, w]."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)


def attach_scale_inputs(
    node: Any, estimator: Any, config: dict[str, Any], qos: Any, **kwargs: Any
) -> list[Any]:
    """Create the subscriptions the estimator's mode needs (relative topic names); returns them.
    `kwargs` go to every create_subscription (e.g. QoS overriding options)."""
    c = {**DEFAULTS, **flatten(config)}
    subscriptions = []
    if hasattr(estimator, "add_pose"):
        body = FrameCheck(node, estimator, "scale.extrinsic.frame", c.get("extrinsic.frame", ""))
        if c["pose_type"] == "pose":
            if body.expected:  # PoseStamped names only the frame it is expressed in, not the body
                node.get_logger().warning("scale.extrinsic.frame is not checked for PoseStamped poses")
            from geometry_msgs.msg import PoseStamped

            def on_pose(msg: PoseStamped) -> None:
                estimator.add_pose(stamp_seconds(msg.header.stamp), *pose_arrays(msg.pose))

            subscriptions.append(node.create_subscription(PoseStamped, "pose", on_pose, qos, **kwargs))
        else:
            from nav_msgs.msg import Odometry

            def on_odom(msg: Odometry) -> None:
                if not body.accepts(msg.child_frame_id, "odom", "child_frame_id"):
                    return
                estimator.add_pose(stamp_seconds(msg.header.stamp), *pose_arrays(msg.pose.pose))

            subscriptions.append(node.create_subscription(Odometry, "odom", on_odom, qos, **kwargs))
    if hasattr(estimator, "add_sparse_points"):
        from sensor_msgs.msg import PointCloud2

        from .pointcloud import xyz_from_cloud

        frames = FrameCheck(node, estimator, "scale.sparse.frame", c.get("sparse.frame", ""))

        def on_points(msg: PointCloud2) -> None:
            if not frames.accepts(msg.header.frame_id, "sparse_points"):
                return
            try:
                points = xyz_from_cloud(msg).reshape(-1, 3)
            except (ValueError, KeyError) as exc:  # malformed cloud: count it, keep the last good one
                estimator.count("bad_point_cloud")
                node.get_logger().warning(f"sparse_points: {exc}", throttle_duration_sec=5.0)
                return
            estimator.add_sparse_points(stamp_seconds(msg.header.stamp), points)

        subscriptions.append(node.create_subscription(PointCloud2, "sparse_points", on_points, qos, **kwargs))
    return subscriptions
