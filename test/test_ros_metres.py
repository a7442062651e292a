"""REP 118 honesty over real DDS, on the real castel sequence (Intel SR300, visp-images-data).

depth/image and depth/points carry metres only; unit-less depth goes to depth/relative. The node
runs the oracle ONNX model (output = the image's red channel): the red channel carries castel's
measured inverse depth under an affine map the node does not know, G and B the camera's grey
image, so a scale mode that works reproduces the SR300 depth, and a relative frame is obvious.
"""

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
    node_command,
    random_domain_id,
    unique_namespace,
    wait_until,
)

from mde_ros.geometry.intrinsics import CameraIntrinsics
from mde_ros.geometry.pointcloud import backproject, pack_points
from mde_ros.ros.image_conversion import array_from_msg, image_msg
from mde_ros.ros.pointcloud import cloud_array, cloud_msg, unpack_rgb

FRAME = "camera_optical_frame"
TOP, LEFT, CROP_H, CROP_W = 2, 5, 476, 630  # multiples of 14: the network sees the image 1:1
# R = OFFSET + GAIN / z: castel's inverse depths (1.9..5.5 1/m) land on R = 94..250. The offset makes
# the map affine (unknown to the node), and R = 0 (no measurement) an inverse depth below 0: NaN.
OFFSET, GAIN = 20.0, 230.0 / 5.6
# fixed mode with these (s, t) undoes the map exactly: 1/z = s R + t
FIXED = {"scale.mode": "fixed", "scale.fixed_scale": 1.0 / GAIN, "scale.fixed_shift": -OFFSET / GAIN}
SILENT_WARNING = "are silent (REP 118: metres only)"


@pytest.fixture(scope="module")
def oracle_onnx(tmp_path_factory) -> str:
    from mde_ros.models.testing import export_oracle_disparity_onnx

    return str(export_oracle_disparity_onnx(tmp_path_factory.mktemp("oracle") / "oracle.onnx"))


@pytest.fixture(scope="module")
def castel():
    """Six castel frames: (rgb with inverse depth in R, measured depth in metres), intrinsics."""
    from mde_ros.data.visp import castel_frames

    try:
        frames = castel_frames(indices=[0, 5, 10, 15, 20, 25])
    except Exception as exc:  # no Debian registry (offline): nothing to test on
        pytest.skip(f"visp-images-data unavailable: {exc}")
    k = frames[0].intrinsics
    k = CameraIntrinsics(k.fx, k.fy, k.cx - LEFT, k.cy - TOP, CROP_W, CROP_H)
    return [castel_image(f) for f in frames], k


def castel_image(frame) -> tuple[np.ndarray, np.ndarray]:
    grey = frame.rgb[TOP : TOP + CROP_H, LEFT : LEFT + CROP_W, 0]
    z = frame.depth[TOP : TOP + CROP_H, LEFT : LEFT + CROP_W]
    with np.errstate(invalid="ignore", divide="ignore"):
        red = np.rint(OFFSET + GAIN / z)
    red = np.where(np.isfinite(z), np.clip(red, OFFSET + 1, 255), 0)  # 0: no measurement
    return np.stack([red, grey, grey], axis=-1).astype(np.uint8), z


def stamped(stamp: float):
    sec, nsec = int(stamp), round((stamp - int(stamp)) * 1e9)
    return lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nsec)


class Session:
    """depth_node (subprocess, oracle model) + a client that plays castel frames."""

    def __init__(self, model: str, tmp_path, params: dict, reliable_input: bool = True) -> None:
        domain, namespace = random_domain_id(), unique_namespace()
        reliable = {"qos.input.reliability": "reliable", "qos.input.depth": 5} if reliable_input else {}
        params = {"input_size": CROP_H, **reliable, **params}  # input_size: the network sees 1:1
        self.node = NodeProcess(node_command(model, namespace, params), domain, tmp_path / "node.log")
        self.client = RosClient(domain, namespace)
        if params.get("image_transport") != "compressed":  # else nobody subscribes to raw `image`
            assert self.client.wait_connected(60), self.node.output()

    def send(self, stamp: float, rgb: np.ndarray, k: CameraIntrinsics, frame_id: str = FRAME) -> None:
        hdr = header(stamp, frame_id)
        self.client.info_pub.publish(camera_info(k.width, k.height, k.fx, k.fy, k.cx, k.cy, hdr))
        time.sleep(0.05)  # separate topics: keep camera_info before its image
        self.client.image_pub.publish(image_msg(rgb, "rgb8", hdr))

    def wait(self, topic: str, stamp: float, timeout: float = 20.0):
        msg = self.client.wait_for(topic, stamped(stamp), timeout)
        assert msg is not None, f"no {topic} for {stamp}:\n{self.node.output()}"
        return msg

    def scale(self) -> dict[str, str]:
        diagnostics = self.client.fresh_diagnostics("depth_node")
        assert diagnostics is not None, self.node.output()
        return diagnostics["scale"]

    def close(self) -> None:
        self.client.close()
        assert self.node.stop(signal.SIGINT) == 0, self.node.output()


def sparse_cloud(z: np.ndarray, k: CameraIntrinsics, stamp: float, frame_id: str = FRAME, count: int = 300):
    """`count` measured castel pixels as a metric point cloud (what a LiDAR would give)."""
    points = backproject(z, k).reshape(-1, 3)
    valid = np.flatnonzero(np.isfinite(points).all(axis=1))
    chosen = np.random.default_rng(int(stamp * 10)).choice(valid, count, replace=False)
    return cloud_msg(pack_points(points[chosen][None]), header(stamp, frame_id))


def median_ratio(depth: np.ndarray, truth: np.ndarray) -> float:
    ok = np.isfinite(depth) & np.isfinite(truth)
    assert ok.sum() > 1000, ok.sum()
    return float(np.median(depth[ok] / truth[ok]))


@pytest.mark.ros
def test_relative_model_default_parameters_never_publish_unitless_metres(oracle_onnx, castel, tmp_path):
    frames, k = castel
    session = Session(oracle_onnx, tmp_path, {}, reliable_input=False)  # config/depth.yaml as shipped
    try:
        for i, (rgb, truth) in enumerate(frames[:3]):
            session.send(10.0 + i, rgb, k)
            relative = array_from_msg(session.wait("depth/relative", 10.0 + i))
            assert relative.dtype == np.float32 and relative.shape == truth.shape
            assert np.nanmedian(relative) == pytest.approx(1.0, abs=0.05)  # unit-less, median 1
            # it is the relative depth: 1/relative is affine in the measured inverse depth
            ok = np.isfinite(relative) & np.isfinite(truth)
            assert np.corrcoef(1.0 / relative[ok], 1.0 / truth[ok])[0, 1] > 0.99
            session.wait("depth/colorized", 10.0 + i)
        assert session.client.messages("depth/image") == [] and session.client.messages("depth/points") == []
        log = session.node.output()
        warning = next((line for line in log.splitlines() if SILENT_WARNING in line), "")
        assert "[WARN]" in warning, log
        for text in ("/depth/image", "/depth/points", "/depth/relative", "scale.mode is none", "intrinsics"):
            assert text in warning, (text, warning)
        assert session.scale()["status"] == "relative"
    finally:
        session.close()


@pytest.mark.ros
def test_sparse_scale_metres_from_the_first_metric_frame_never_relative(oracle_onnx, castel, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    frames, k = castel
    session = Session(oracle_onnx, tmp_path, {"scale.mode": "sparse"})
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        points_pub = session.client.node.create_publisher(PointCloud2, "sparse_points", qos)
        assert wait_until(lambda: points_pub.get_subscription_count() > 0, 20), session.node.output()
        for i, (rgb, truth) in enumerate(frames):
            stamp = 20.0 + i
            if i >= 2:  # the first two frames have no metric input: relative only
                points_pub.publish(sparse_cloud(truth, k, stamp))
                time.sleep(0.2)
            session.send(stamp, rgb, k)
            session.wait("depth/relative", stamp)
            if i >= 3:
                session.wait("depth/image", stamp)
        metric = session.client.messages("depth/image")
        stamps = [m.header.stamp.sec for m in metric]
        assert stamps and min(stamps) >= 22 and stamps == sorted(stamps), stamps
        assert stamps == list(range(min(stamps), 26)), stamps  # from the first metric frame on: all
        for msg in metric:  # every one is metres (the SR300's), none is unit-less (median ~1)
            truth = frames[msg.header.stamp.sec - 20][1]
            assert median_ratio(array_from_msg(msg), truth) == pytest.approx(1.0, abs=0.03)
        for cloud in session.client.messages("depth/points"):
            assert cloud.header.stamp.sec in stamps
        assert SILENT_WARNING in session.node.output()
        assert "metric scale established" in session.node.output()
        assert session.scale()["status"] in ("metric", "holding")
    finally:
        session.close()


@pytest.mark.ros
def test_metric_model_publishes_metres_from_the_first_frame(tiny_metric_onnx, castel, tmp_path):
    frames, k = castel
    session = Session(tiny_metric_onnx, tmp_path, {"input_size": 140})
    try:
        session.send(30.0, frames[0][0], k)
        depth = array_from_msg(session.wait("depth/image", 30.0))
        assert np.isfinite(depth).mean() > 0.9
        cloud = cloud_array(session.wait("depth/points", 30.0))
        np.testing.assert_allclose(cloud["z"], depth, rtol=1e-6)
        assert session.client.wait_for("depth/relative", timeout=0.5) is None  # relative models only
        assert SILENT_WARNING not in session.node.output()
    finally:
        session.close()


@pytest.mark.ros
def test_points_and_rep118_inf_beyond_range(oracle_onnx, castel, tmp_path):
    """Fixed scale undoes the red channel's map: depth/image is the SR300 depth; the cloud is its
    back-projection; beyond depth.max / points.max_range is +Inf, no measurement NaN."""
    frames, k = castel
    rgb, truth = frames[1]
    session = Session(oracle_onnx, tmp_path, FIXED)
    try:
        session.send(40.0, rgb, k)
        depth = array_from_msg(session.wait("depth/image", 40.0))
        assert median_ratio(depth, truth) == pytest.approx(1.0, abs=0.01)
        np.testing.assert_array_equal(np.isnan(depth), ~np.isfinite(truth))  # no measurement = NaN
        cloud = cloud_array(session.wait("depth/points", 40.0))
        finite = np.isfinite(depth)
        v, u = np.mgrid[0:CROP_H, 0:CROP_W]
        np.testing.assert_allclose(cloud["z"][finite], depth[finite], rtol=1e-6)
        for axis, pixel, c, f in (("x", u, k.cx, k.fx), ("y", v, k.cy, k.fy)):
            expected = (pixel - c) * depth / f
            np.testing.assert_allclose(cloud[axis][finite], expected[finite], rtol=1e-5, atol=1e-6)
        assert np.isnan(cloud["x"][~finite]).all()
        np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb)  # coloured by the camera image

        limit = float(np.nanmedian(depth))
        results = session.client.set_parameters(
            "depth_node", {"points.stride": 3, "points.max_range": limit, "depth.max": 0.0}
        )
        assert all(r.successful for r in results), results
        session.send(41.0, rgb, k)
        depth = array_from_msg(session.wait("depth/image", 41.0))
        cloud = cloud_array(session.wait("depth/points", 41.0))
        assert (cloud.shape) == (159, 210)  # ceil(476/3), ceil(630/3): organized layout kept
        z = depth[::3, ::3]
        far, near, missing = z > limit, z <= limit, np.isnan(z)
        assert far.any() and near.any() and missing.any()
        assert np.isposinf(cloud["z"][far]).all() and np.isposinf(cloud["x"][far]).all()
        np.testing.assert_allclose(cloud["z"][near], z[near], rtol=1e-6)
        assert np.isnan(cloud["z"][missing]).all()

        (ok,) = session.client.set_parameters("depth_node", {"depth.max": limit})
        assert ok.successful
        session.send(42.0, rgb, k)
        limited = array_from_msg(session.wait("depth/image", 42.0))
        beyond = depth > limit
        assert np.isposinf(limited[beyond]).all() and np.isfinite(limited[depth <= limit]).all()
        np.testing.assert_array_equal(np.isnan(limited), np.isnan(depth))
    finally:
        session.close()


def _compressed(rgb: np.ndarray, fmt: str, stamp: float):
    import cv2
    from sensor_msgs.msg import CompressedImage

    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpeg" else []
    ok, data = cv2.imencode(
        f".{'jpg' if fmt == 'jpeg' else fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params
    )
    assert ok
    # image_transport's format string: "<source encoding>; <codec> compressed <encoded as>"
    return CompressedImage(
        header=header(stamp, FRAME), format=f"rgb8; {fmt} compressed bgr8", data=data.tobytes()
    )


@pytest.mark.ros
def test_compressed_input_matches_the_raw_path_and_survives_undecodable_bytes(oracle_onnx, castel, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    frames, k = castel
    rgb, truth = frames[2]
    raw_path = 1.0 / (rgb[..., 0] / GAIN - OFFSET / GAIN)  # what the raw path publishes (fixed map)
    raw_path[rgb[..., 0] == 0] = np.nan
    session = Session(oracle_onnx, tmp_path, {**FIXED, "image_transport": "compressed"})
    try:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pub = session.client.node.create_publisher(CompressedImage, "image/compressed", qos)
        client = session.client
        assert wait_until(lambda: pub.get_subscription_count() > 0, 60), session.node.output()
        assert wait_until(lambda: all(sub.get_publisher_count() for sub in client.subs), 20)
        assert client.image_pub.get_subscription_count() == 0  # raw `image` is not subscribed
        assert session.node.wait_for_output(f"waiting for {client.namespace}/image/compressed")

        def send(stamp: float, msg) -> None:
            hdr = header(stamp, FRAME)
            session.client.info_pub.publish(camera_info(k.width, k.height, k.fx, k.fy, k.cx, k.cy, hdr))
            time.sleep(0.05)
            pub.publish(msg)

        send(50.0, _compressed(rgb, "png", 50.0))  # lossless: exactly the raw path
        depth = array_from_msg(session.wait("depth/image", 50.0))
        np.testing.assert_allclose(depth, raw_path, rtol=1e-5)

        send(51.0, _compressed(rgb, "jpeg", 51.0))  # lossy: the raw path within jpeg noise
        depth = array_from_msg(session.wait("depth/image", 51.0))
        ok = np.isfinite(depth) & np.isfinite(raw_path)
        assert ok.mean() > 0.6
        error = np.abs(depth[ok] / raw_path[ok] - 1.0)
        assert np.median(error) < 0.02 and np.percentile(error, 90) < 0.1, np.percentile(error, [50, 90])
        assert median_ratio(depth, truth) == pytest.approx(1.0, abs=0.02)

        bad = CompressedImage(header=header(52.0, FRAME), format="jpeg", data=b"\xff\xd8 not a jpeg")
        send(52.0, bad)
        time.sleep(0.3)
        send(53.0, _compressed(rgb, "jpeg", 53.0))
        session.wait("depth/image", 53.0)
        assert session.client.wait_for("depth/image", stamped(52.0), timeout=0.1) is None

        def counted() -> bool:
            pipeline = session.client.fresh_diagnostics("depth_node")["pipeline"]
            return pipeline.get("bad input: undecodable_image") == "1"

        assert wait_until(counted, 10), session.client.fresh_diagnostics("depth_node")
        assert "could not be decoded" in session.node.output()
        assert session.node.proc.poll() is None
    finally:
        session.close()


@pytest.mark.ros
def test_sparse_points_in_the_wrong_frame_are_refused_and_counted(oracle_onnx, castel, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    frames, k = castel
    rgb, truth = frames[3]
    session = Session(oracle_onnx, tmp_path, {"scale.mode": "sparse", "scale.sparse.frame": FRAME})
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        points_pub = session.client.node.create_publisher(PointCloud2, "sparse_points", qos)
        assert wait_until(lambda: points_pub.get_subscription_count() > 0, 20), session.node.output()
        for stamp in (60.0, 61.0):  # right points, wrong frame: never used
            points_pub.publish(sparse_cloud(truth, k, stamp, frame_id="lidar_link"))
            time.sleep(0.2)
            session.send(stamp, rgb, k)
            session.wait("depth/relative", stamp)
        assert session.client.messages("depth/image") == []
        scale = session.scale()
        assert scale["status"] == "relative" and scale["counter: frame_mismatch"] == "2", scale
        log = session.node.output()
        assert "[ERROR]" in log and "header.frame_id is 'lidar_link' but scale.sparse.frame is" in log, log

        points_pub.publish(sparse_cloud(truth, k, 62.0))  # the expected frame: accepted
        time.sleep(0.2)
        session.send(62.0, rgb, k)
        depth = array_from_msg(session.wait("depth/image", 62.0))
        assert median_ratio(depth, truth) == pytest.approx(1.0, abs=0.03)
    finally:
        session.close()
