"""Subscriptions that feed the scale estimator: `odom` / `pose` (trajectory mode), `sparse_points`.

Only message -> numpy conversion happens here; validation (NaN, quaternions, stamp order) is in
the ROS-free estimators, which count every rejection for diagnostics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..scale.factory import DEFAULTS, flatten


def stamp_seconds(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def pose_arrays(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose -> position [x, y, z], quaternion [x, y, z, w]."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)


def attach_scale_inputs(
    node: Any, estimator: Any, config: dict[str, Any], qos: Any, timelines: Any = None
) -> list[Any]:
    """Create the subscriptions the estimator's mode needs (relative topic names); returns them.

    Every message passes its input's time line first (`mde_ros.scale.timeline`); a message the
    estimator refuses is logged with its reason (throttled per reason by `node.throttle`).
    """
    c = {**DEFAULTS, **flatten(config)}
    subscriptions = []
    if hasattr(estimator, "add_pose"):
        topic = "pose" if c["pose_type"] == "pose" else "odom"

        def on_pose(msg: Any) -> None:
            stamp = stamp_seconds(msg.header.stamp)
            if timelines is not None and not timelines.observe(topic, stamp):
                return
            pose = msg.pose if topic == "pose" else msg.pose.pose
            if not estimator.add_pose(stamp, *pose_arrays(pose)):
                reason = estimator.last_rejection or "rejected"
                node.throttle.warn(f"{topic}_{reason}", f"{topic}: pose at {stamp:.3f} s refused ({reason})")

        if topic == "pose":
            from geometry_msgs.msg import PoseStamped as pose_type
        else:
            from nav_msgs.msg import Odometry as pose_type
        subscriptions.append(node.create_subscription(pose_type, topic, on_pose, qos))
    if hasattr(estimator, "add_sparse_points"):
        from sensor_msgs.msg import PointCloud2

        from .pointcloud import xyz_from_cloud

        def on_points(msg: PointCloud2) -> None:
            try:
                points = xyz_from_cloud(msg).reshape(-1, 3)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # count it, keep the last good one
                estimator.count("bad_point_cloud")
                node.throttle.warn("bad_point_cloud", f"sparse_points: unusable cloud ({exc})")
                return
            if not len(points):  # e.g. an organized cloud of height 0: nothing to fit
                estimator.count("empty_point_cloud")
                node.throttle.warn("empty_point_cloud", "sparse_points: empty cloud ignored")
                return
            stamp = stamp_seconds(msg.header.stamp)
            if timelines is None or timelines.observe("sparse_points", stamp):
                estimator.add_sparse_points(stamp, points)

        subscriptions.append(node.create_subscription(PointCloud2, "sparse_points", on_points, qos))
    return subscriptions
