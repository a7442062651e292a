"""Scale modes in depth_node over real ROS 2: sparse points and odometry from another process."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from ros_helpers import (  # fmt: skip
    NodeProcess,
    RosClient,
    camera_info,
    header,
    make_image,
    node_command,
    random_domain_id,
    unique_namespace,
    wait_until,
)

from mde_ros.geometry.pointcloud import POINT_DTYPE
from mde_ros.ros.image_conversion import array_from_msg, image_msg
from mde_ros.ros.pointcloud import cloud_msg

H, W = 120, 160
FX, FY, CX, CY = 110.0, 105.0, 79.5, 59.5
FRAME = "camera_optical_frame"


def _stamped(stamp: float):
    sec, nsec = int(stamp), round((stamp - int(stamp)) * 1e9)
    return lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nsec)


def _start(tiny_onnx, tmp_path, params):
    domain, namespace = random_domain_id(), unique_namespace()
    node = NodeProcess(node_command(tiny_onnx, namespace, {"input_size": 140, **params}), domain,
                       tmp_path / "depth_node.log")  # fmt: skip
    client = RosClient(domain, namespace)
    return node, client


def _stop(node, client):
    client.close()
    assert node.stop(signal.SIGINT) == 0, node.output()


def _send(client, stamp: float, rgb: np.ndarray) -> None:
    hdr = header(stamp, FRAME)
    client.info_pub.publish(camera_info(W, H, FX, FY, CX, CY, hdr))
    time.sleep(0.05)
    client.image_pub.publish(image_msg(rgb, "rgb8", hdr))


@pytest.mark.ros
def test_sparse_mode_turns_depth_metric(tiny_onnx, tmp_path):
    """Points at 3x the relative depth of the node's own output: the published depth becomes 3x it."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    node, client = _start(tiny_onnx, tmp_path, {"scale.mode": "sparse", "scale.min_inlier_ratio": 0.5})
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        points_pub = client.node.create_publisher(PointCloud2, "sparse_points", qos)
        assert client.wait_connected(60), node.output()
        rgb = make_image(H, W, seed=5)
        _send(client, 100.0, rgb)
        first = client.wait_for("depth/relative", _stamped(100.0))
        assert first is not None, node.output()
        assert client.wait_for("depth/image", _stamped(100.0), timeout=0.5) is None  # not metres yet
        relative = array_from_msg(first)
        assert client.fresh_diagnostics("depth_node")["scale"]["status"] == "relative"

        v, u = np.nonzero(np.isfinite(relative))
        pick = np.random.default_rng(0).choice(v.size, 300, replace=False)
        v, u = v[pick], u[pick]
        z = 3.0 * relative[v, u]  # metric depth = 3 x relative: 1/z is linear in the disparity
        cloud = np.zeros(z.size, POINT_DTYPE)
        cloud["x"], cloud["y"], cloud["z"] = (u - CX) * z / FX, (v - CY) * z / FY, z
        for stamp in (100.5, 101.0):
            points_pub.publish(cloud_msg(cloud, header(stamp, FRAME)))
            time.sleep(0.2)
            _send(client, stamp, rgb)
        metric = client.wait_for("depth/image", _stamped(101.0))
        assert metric is not None, node.output()
        depth = array_from_msg(metric)
        both = np.isfinite(depth) & np.isfinite(relative)
        assert np.median(depth[both] / relative[both]) == pytest.approx(3.0, rel=0.02)
        scale = client.fresh_diagnostics("depth_node")["scale"]
        assert scale["status"] in ("metric", "holding") and scale["mode"] == "sparse", scale
    finally:
        _stop(node, client)


@pytest.mark.ros
def test_trajectory_mode_reads_odometry_and_counts_bad_poses(tiny_onnx, tmp_path):
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    reliable = {"qos.input.reliability": "reliable", "qos.input.depth": 10}  # every pose arrives
    node, client = _start(tiny_onnx, tmp_path, {"scale.mode": "trajectory", **reliable})
    try:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        odom_pub = client.node.create_publisher(Odometry, "odom", qos)
        assert client.wait_connected(60), node.output()
        for i, (x, qw) in enumerate([(0.0, 1.0), (float("nan"), 1.0), (0.1, 3.0), (0.2, 1.0), (0.2, 1.0)]):
            msg = Odometry()
            msg.header = header(200.0 + (i if i < 4 else 3) * 0.05, "odom")
            msg.pose.pose.position.x = x
            msg.pose.pose.orientation.w = qw
            odom_pub.publish(msg)
        for reason in ("nan_pose", "non_unit_quaternion", "duplicate_stamp"):  # each one logged
            assert node.wait_for_output(f"refused ({reason})"), node.output()

        def counted_before_any_frame() -> bool:  # /diagnostics counters are live, not per frame
            scale = client.fresh_diagnostics("depth_node")["scale"]
            return scale.get("counter: duplicate_stamp") == "1" and scale.get("counter: nan_pose") == "1"

        assert wait_until(counted_before_any_frame, 10.0), client.fresh_diagnostics("depth_node")
        # The good poses left (200.0, 200.15) are further apart than scale.max_pose_gap (0.1 s).
        _send(client, 200.07, make_image(H, W, seed=1))
        assert client.wait_for("depth/relative", _stamped(200.07)) is not None, node.output()
        scale = client.fresh_diagnostics("depth_node")["scale"]
        assert scale["mode"] == "trajectory" and scale["status"] == "relative", scale
        for reason in ("nan_pose", "non_unit_quaternion", "duplicate_stamp", "pose_gap"):
            assert scale.get(f"counter: {reason}") == "1", (reason, scale)
        assert "max_pose_gap" in scale["detail"], scale
        _send(client, 200.15, make_image(H, W, seed=1))  # exactly at a good pose: first keyframe
        assert client.wait_for("depth/relative", _stamped(200.15)) is not None, node.output()
        scale = client.fresh_diagnostics("depth_node")["scale"]
        assert "keyframe" in scale["detail"] and scale["status"] == "relative", scale
    finally:
        _stop(node, client)


YEARS = 10 * 365 * 86400.0


def _frames_until_metric(client, points_pub, cloud, rgb, stamps) -> int | None:
    """Send sparse points + a frame per stamp; the 1-based frame at which the scale is metric."""
    for i, stamp in enumerate(stamps):
        points_pub.publish(cloud_msg(cloud, header(stamp, FRAME)))
        time.sleep(0.1)
        _send(client, stamp, rgb)
        assert client.wait_for("depth/relative", _stamped(stamp), timeout=20.0) is not None
        if client.fresh_diagnostics("depth_node")["scale"]["status"] == "metric":
            return i + 1
    return None


@pytest.mark.ros
def test_sparse_scale_recovers_from_a_future_stamp_and_from_a_loop(tiny_onnx, tmp_path):
    """One cloud stamped years ahead, then a bag loop back to the first stamps: metric again
    within a few frames each time, and the diagnostics count both."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    params = {"scale.mode": "sparse", "scale.min_inlier_ratio": 0.5, "qos.input.reliability": "reliable"}
    node, client = _start(tiny_onnx, tmp_path, {**params, "qos.input.depth": 5})
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        points_pub = client.node.create_publisher(PointCloud2, "sparse_points", qos)
        assert client.wait_connected(60), node.output()
        rgb = make_image(H, W, seed=5)
        _send(client, 99.5, rgb)
        relative = array_from_msg(client.wait_for("depth/relative", _stamped(99.5)))
        v, u = np.nonzero(np.isfinite(relative))
        pick = np.random.default_rng(0).choice(v.size, 300, replace=False)
        v, u = v[pick], u[pick]
        z = 3.0 * relative[v, u]
        cloud = np.zeros(z.size, POINT_DTYPE)
        cloud["x"], cloud["y"], cloud["z"] = (u - CX) * z / FX, (v - CY) * z / FY, z
        first = [100.0, 100.5, 101.0, 101.5]
        assert _frames_until_metric(client, points_pub, cloud, rgb, first) is not None, node.output()

        points_pub.publish(cloud_msg(cloud, header(101.5 + YEARS, FRAME)))  # a clock glitch
        later = [102.0, 102.5, 103.0, 103.5]
        assert (_frames_until_metric(client, points_pub, cloud, rgb, later) or 9) <= 2, node.output()

        assert (_frames_until_metric(client, points_pub, cloud, rgb, first) or 9) <= 3, node.output()
        depth = array_from_msg(client.messages("depth/image")[-1])
        both = np.isfinite(depth) & np.isfinite(relative)
        assert np.median(depth[both] / relative[both]) == pytest.approx(3.0, rel=0.02)
        scale = client.fresh_diagnostics("depth_node")["scale"]
        for key in ("sparse_points_stamp_outlier", "sparse_points_time_jump_back", "image_time_jump_back"):
            assert int(scale.get(f"counter: {key}", "0")) >= 1, (key, scale)
        assert node.wait_for_output("sparse_points: time jumped back"), node.output()
    finally:
        _stop(node, client)
