"""Scale modes offline: `mde-ros bag` recovers metres from recorded sparse points and odometry, fed
in stamp order through the node's estimators, with the oracle model (its "network output" is the
image's red channel, an affine map of inverse depth the estimators have to undo)."""

from __future__ import annotations

import numpy as np
import pytest
from bag_helpers import camera_info, header, image, sparse_cloud
from test_bag import read_bag, run_bag, stamp_ns
from test_ros_scale_modes import (  # noqa: F401 (fixtures)
    CASTLE_INDICES,
    FRAME,
    LEFT,
    TOP,
    castle,
    castle_image,
    oracle_onnx,
)

from mde_ros.bags.writer import BagWriter, typestore
from mde_ros.geometry.intrinsics import CameraIntrinsics
from mde_ros.ros.image_conversion import array_from_msg

START_NS = 1_700_000_000 * 1_000_000_000
PERIOD_NS = 200_000_000


def record(path, frames, extra) -> dict[int, np.ndarray]:
    """image + camera_info per frame (cropped oracle images) plus `extra(writer, i, stamp, frame, k)`;
    returns stamp -> true depth."""
    truth = {}
    with BagWriter(path, "mcap") as writer:
        writer.add_topic("/cam/camera_info", "sensor_msgs/msg/CameraInfo")
        writer.add_topic("/cam/image_raw", "sensor_msgs/msg/Image")
        for i, frame in enumerate(frames):
            rgb, z = castle_image(frame)
            k = frame.intrinsics
            k = CameraIntrinsics(k.fx, k.fy, k.cx - LEFT, k.cy - TOP, rgb.shape[1], rgb.shape[0])
            stamp = START_NS + i * PERIOD_NS
            hdr = header(stamp, FRAME)
            writer.write_message("/cam/camera_info", stamp, camera_info(k, hdr))
            writer.write_message("/cam/image_raw", stamp, image(rgb, hdr, compressed=False))
            extra(writer, stamp, frame, k, z)
            truth[stamp] = z
    return truth


def depth_errors(output, truth) -> list[float]:
    """Per metric frame: median(depth / truth) - 1."""
    errors = []
    for _, msg in read_bag(output)["/cam/depth/image"]:
        depth, z = array_from_msg(msg), truth[stamp_ns(msg)]
        ok = np.isfinite(depth) & np.isfinite(z)
        assert ok.sum() > 1000
        errors.append(float(np.median(depth[ok] / z[ok]) - 1.0))
    return errors


@pytest.fixture
def oracle_args(oracle_onnx) -> list[str]:  # noqa: F811
    """The oracle model, seen 1:1 (the crop is 476 px high, a multiple of 14)."""
    return ["--model", oracle_onnx, "--backend", "onnxruntime", "-p", "input_size:=476"]


def test_sparse_mode_from_recorded_points(oracle_args, castle, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)

    def points(writer, stamp, frame, k, z):
        writer.add_topic("/lidar/points", "sensor_msgs/msg/PointCloud2")
        # The recorder receives the scan 50 ms after the camera image, with the image's stamp.
        writer.write_message(
            "/lidar/points", stamp + 50_000_000, sparse_cloud(z, k, header(stamp, FRAME), rng)
        )

    truth = record(tmp_path / "in", castle, points)
    result = run_bag(tmp_path / "in", "-o", tmp_path / "out", *oracle_args, "-p", "scale.mode:=sparse")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    n = len(CASTLE_INDICES)
    assert f"({n} metric, 0 relative)" in result.stdout, result.stdout
    assert "sparse_points: /lidar/points" in result.stdout
    errors = depth_errors(tmp_path / "out", truth)
    assert len(errors) == n and max(abs(e) for e in errors) <= 0.03, errors


def test_trajectory_mode_from_recorded_odometry(oracle_args, castle, tmp_path):  # noqa: F811
    from mde_ros.scale.transforms import invert, matrix_to_quat

    types = typestore().types

    def odometry(writer, stamp, frame, k, z):
        writer.add_topic("/odom", "nav_msgs/msg/Odometry")
        camera = invert(frame.pose_cam_obj)  # camera optical frame in the world (= object) frame
        position = types["geometry_msgs/msg/Point"](*(float(c) for c in camera[:3, 3]))
        orientation = types["geometry_msgs/msg/Quaternion"](
            *(float(c) for c in matrix_to_quat(camera[:3, :3]))
        )
        pose = types["geometry_msgs/msg/PoseWithCovariance"](
            types["geometry_msgs/msg/Pose"](position, orientation), np.zeros(36)
        )
        twist = types["geometry_msgs/msg/TwistWithCovariance"](
            types["geometry_msgs/msg/Twist"](
                types["geometry_msgs/msg/Vector3"](0, 0, 0), types["geometry_msgs/msg/Vector3"](0, 0, 0)
            ),
            np.zeros(36),
        )
        msg = types["nav_msgs/msg/Odometry"](header(stamp, "world"), FRAME, pose, twist)
        # Odometry recorded 30 ms after the image it belongs to: in arrival order the image would
        # find no pose after its stamp; fed in stamp order it finds its own.
        writer.write_message("/odom", stamp + 30_000_000, msg)

    truth = record(tmp_path / "in", castle, odometry)
    result = run_bag(tmp_path / "in", "-o", tmp_path / "out", *oracle_args,
                     "-p", "scale.mode:=trajectory", "-p", "scale.min_baseline:=0.03")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    n = len(CASTLE_INDICES)
    # The first frame has no partner yet: relative (on depth/relative); every later one is metric.
    assert "(" + f"{n - 1} metric, 1 relative)" in result.stdout, result.stdout
    assert "scale over time: relative 0.00-0.00 s (1 frames) -> metric" in result.stdout, result.stdout
    errors = depth_errors(tmp_path / "out", truth)
    assert len(errors) == n - 1 and max(abs(e) for e in errors) <= 0.05, errors
