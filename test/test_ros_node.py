"""depth_node over real ROS 2 (Fast DDS): the node runs in a subprocess started the way a user
starts it (`--params-file config/depth.yaml -p model:=...`), the client is an rclpy node here."""

from __future__ import annotations

import ast
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import (
    PARAMS_FILE,
    REPO,
    NodeProcess,
    RosClient,
    camera_info,
    header,
    make_image,
    node_command,
    random_domain_id,
    ros_env,
    unique_namespace,
    wait_until,
)

from mde_ros.ros.image_conversion import array_from_msg, image_msg
from mde_ros.ros.pointcloud import cloud_array, unpack_rgb

H, W = 120, 160
FX, FY, CX, CY = 110.0, 105.0, 79.5, 59.5
FRAME = "camera_optical_frame"
NODE = "depth_node"


@pytest.fixture(scope="module")
def ros(tiny_onnx, tmp_path_factory):
    """One node process + one client for the module (node start-up costs ~3 s)."""
    domain, namespace = random_domain_id(), unique_namespace()
    log = tmp_path_factory.mktemp("node") / "depth_node.log"
    node = NodeProcess(node_command(tiny_onnx, namespace, {"input_size": 140}), domain, log)
    client = RosClient(domain, namespace)
    try:
        assert client.wait_connected(60), f"node did not come up:\n{node.output()}"
        yield node, client
    finally:
        client.close()
        rc = node.stop(signal.SIGINT)
    assert rc == 0, f"depth_node exited {rc} on SIGINT:\n{node.output()}"


_stamp = [1000.0]


def send(client: RosClient, rgb=None, info=True, image=None, **info_kw) -> float:
    """Publish one frame (and its CameraInfo); returns its stamp in seconds."""
    _stamp[0] += 0.5
    hdr = header(_stamp[0], FRAME)
    if info:
        kw = dict(width=W, height=H, fx=FX, fy=FY, cx=CX, cy=CY) | info_kw
        client.info_pub.publish(camera_info(hdr=hdr, **kw))
        time.sleep(0.05)  # camera_info and image are separate topics: keep their order
    if image is None:
        image = image_msg(make_image(H, W) if rgb is None else rgb, "rgb8", hdr)
    image.header = hdr
    client.image_pub.publish(image)
    return _stamp[0]


def stamped(stamp: float):
    sec, nsec = int(stamp), round((stamp - int(stamp)) * 1e9)
    return lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nsec)


@pytest.mark.ros
def test_no_camera_info_gives_no_output_and_a_warning(ros):
    node, client = ros
    stamp = send(client, info=False)
    assert client.wait_for("depth/image", stamped(stamp), timeout=1.5) is None
    assert node.wait_for_output("no CameraInfo received on"), node.output()
    diag = client.fresh_diagnostics(NODE)
    assert diag["pipeline"]["message"].startswith("waiting for CameraInfo"), diag
    assert diag["pipeline"]["level"] == "1"


@pytest.mark.ros
def test_output_contract(ros):
    _, client = ros
    rgb = make_image(H, W, seed=3)
    stamp = send(client, rgb)
    depth_msg = client.wait_for("depth/image", stamped(stamp))
    assert depth_msg is not None, "no depth/image"
    assert (depth_msg.encoding, depth_msg.height, depth_msg.width) == ("32FC1", H, W)
    assert depth_msg.header.frame_id == FRAME
    depth = array_from_msg(depth_msg)
    finite = np.isfinite(depth)
    assert finite.mean() > 0.5 and (depth[finite] > 0).all()
    # relative model, no scale: unit-less depth normalised to a median of ~1 (a sampled median)
    assert 0.5 < np.nanmedian(depth) < 2.0

    info = client.wait_for("depth/camera_info", stamped(stamp))
    assert info is not None and info.header.frame_id == FRAME
    assert (info.width, info.height, info.k[0], info.k[2]) == (W, H, FX, CX)

    colorized = client.wait_for("depth/colorized", stamped(stamp))
    assert (colorized.encoding, colorized.height, colorized.width) == ("bgr8", H, W)
    assert colorized.header.frame_id == FRAME
    assert array_from_msg(colorized)[finite].max() > 0

    cloud_msg = client.wait_for("depth/points", stamped(stamp))
    assert (cloud_msg.height, cloud_msg.width, cloud_msg.is_dense) == (H, W, False)
    assert cloud_msg.header.frame_id == FRAME
    cloud = cloud_array(cloud_msg)
    v, u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(cloud["z"][finite], depth[finite], rtol=1e-6)
    np.testing.assert_allclose(cloud["x"][finite], ((u - CX) * depth / FX)[finite], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"][finite], ((v - CY) * depth / FY)[finite], rtol=1e-5, atol=1e-6)
    assert np.isnan(cloud["x"][~finite]).all()
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb)


@pytest.mark.ros
def test_dynamic_stride_and_max_range(ros):
    _, client = ros
    results = client.set_parameters(NODE, {"points.stride": 3, "points.max_range": 1.0})
    assert all(r.successful for r in results), results
    try:
        stamp = send(client)
        cloud_msg = client.wait_for("depth/points", stamped(stamp))
        depth = array_from_msg(client.wait_for("depth/image", stamped(stamp)))
        assert (cloud_msg.height, cloud_msg.width) == (40, 54)  # ceil(120/3), ceil(160/3)
        cloud = cloud_array(cloud_msg)
        z = depth[::3, ::3]
        keep = np.isfinite(z) & (z <= 1.0)
        assert keep.any() and (~keep).any()
        np.testing.assert_allclose(cloud["z"][keep], z[keep], rtol=1e-6)
        assert np.isnan(cloud["z"][~keep]).all()  # beyond max_range: NaN, organized layout kept
        _, u = np.mgrid[0:H:3, 0:W:3]
        np.testing.assert_allclose(cloud["x"][keep], ((u - CX) * z / FX)[keep], rtol=1e-5, atol=1e-6)
    finally:
        client.set_parameters(NODE, {"points.stride": 1, "points.max_range": 0.0})


@pytest.mark.ros
def test_parameter_rejection_through_set_parameters_service(ros):
    _, client = ros
    stride, model, max_range, enabled = client.set_parameters(
        NODE, {"points.stride": 0, "model": "other.onnx", "points.max_range": -1.0, "points.enabled": "yes"}
    )
    assert not stride.successful and "points.stride" in stride.reason and "Min: 1" in stride.reason
    assert not model.successful and "read-only" in model.reason
    assert not max_range.successful and "points.max_range" in max_range.reason
    assert not enabled.successful and "type" in enabled.reason.lower()
    (ok,) = client.set_parameters(NODE, {"colorized.enabled": True})
    assert ok.successful


@pytest.mark.ros
def test_relative_publish_false_publishes_nothing_until_metric(ros):
    _, client = ros
    (ok,) = client.set_parameters(NODE, {"relative.publish": False})
    assert ok.successful
    try:
        stamp = send(client)
        assert client.wait_for("depth/image", stamped(stamp), timeout=1.5) is None
        assert client.wait_for("depth/points", stamped(stamp), timeout=0.1) is None
    finally:
        client.set_parameters(NODE, {"relative.publish": True})
    stamp = send(client)
    assert client.wait_for("depth/image", stamped(stamp)) is not None


def _bad_image(**fields):
    from sensor_msgs.msg import Image

    msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
    for key, value in fields.items():
        setattr(msg, key, value)
    if "data" not in fields:
        msg.data = bytes(msg.step * msg.height)
    return msg


@pytest.mark.ros
@pytest.mark.parametrize(
    "reason, bad, log",
    [
        (
            "unsupported_encoding",
            dict(image=_bad_image(encoding="yuv422")),
            "unsupported image encoding 'yuv422'",
        ),
        ("empty_image", dict(image=_bad_image(height=0, width=0, step=0, data=b"")), "image is empty (0x0)"),
        ("bad_step", dict(image=_bad_image(step=W * 3 - 1)), f"image step {W * 3 - 1} is smaller"),
        ("truncated_data", dict(image=_bad_image(data=bytes(1000))), "has 1000 bytes but step*height"),
        ("camera_info_invalid", dict(fx=0.0), "focal lengths must be positive (fx=0.0"),
        (
            "camera_info_size_mismatch",
            dict(width=320, height=240),
            "CameraInfo is 320x240 but the image is 160x120",
        ),
    ],
)
def test_bad_input_is_counted_and_node_keeps_serving(ros, reason, bad, log):
    node, client = ros
    before = client.fresh_diagnostics(NODE)["pipeline"].get(f"bad input: {reason}", "0")
    bad_stamp = send(client, **bad)

    def counted() -> bool:
        diag = client.fresh_diagnostics(NODE)
        return int(diag["pipeline"].get(f"bad input: {reason}", "0")) > int(before)

    # Paced by the node: the good frame goes out once the bad one was taken (and counted).
    assert wait_until(counted, 10.0), client.fresh_diagnostics(NODE)
    assert node.wait_for_output(log), node.output()
    good_stamp = send(client)
    assert client.wait_for("depth/image", stamped(good_stamp)) is not None, node.output()
    assert client.wait_for("depth/image", stamped(bad_stamp), timeout=0.1) is None
    assert node.proc.poll() is None


@pytest.mark.ros
def test_diagnostics_content(ros):
    _, client = ros
    for _ in range(3):  # each one answered before the next: none is dropped
        assert client.wait_for("depth/image", stamped(send(client))) is not None
    diag = client.fresh_diagnostics(NODE)
    pipeline, scale = diag["pipeline"], diag["scale"]
    assert pipeline["backend"] == "onnxruntime" and pipeline["device"] == "CPUExecutionProvider"
    assert pipeline["model"] == "random-tiny-depth-anything-disparity"
    assert float(pipeline["latency p50 (ms)"]) > 0 and float(pipeline["latency p99 (ms)"]) >= float(
        pipeline["latency p50 (ms)"]
    )
    assert int(pipeline["frames processed"]) >= 3
    for key in ("input rate (Hz)", "output rate (Hz)", "frames dropped"):
        assert key in pipeline
    assert scale["status"] == "relative" and scale["level"] == "1" and "scale: relative" in scale["message"]
    for key in ("scale", "shift", "uncertainty", "age (s)"):
        assert key in scale


@pytest.mark.ros
def test_frames_lost_before_the_node_are_estimated_from_stamp_gaps(ros):
    _, client = ros
    key = "frames lost before the node (stamp gaps, estimate)"
    before = int(client.fresh_diagnostics(NODE)["pipeline"][key])
    for _ in range(6):  # a steady camera: one frame every 0.5 s
        assert client.wait_for("depth/image", stamped(send(client))) is not None
    _stamp[0] += 1.0  # two frames the camera sent never reached the node
    assert client.wait_for("depth/image", stamped(send(client))) is not None
    assert int(client.fresh_diagnostics(NODE)["pipeline"][key]) - before == 2


@pytest.mark.ros
@pytest.mark.slow
def test_overload_drops_frames_and_answers_the_newest(tiny_onnx, tmp_path):
    """A camera burst far faster than the model: older frames are dropped and declared, the
    answers come in stamp order (no backlog) and the newest frame is answered.

    Reliable input with a deep history lets every frame reach the node's callback, so the
    counts must add up exactly whatever the machine's load (no timing in the assertions)."""
    domain, namespace = random_domain_id(), unique_namespace()
    params = {"input_size": 518, "qos.input.reliability": "reliable", "qos.input.depth": 100}
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, tmp_path / "node.log")
    # Only depth/image is subscribed: the cloud and colour map work must be skipped.
    client = RosClient(domain, namespace, outputs=("depth/image",))
    try:
        assert client.wait_connected(60), node.output()
        rgb = make_image(H, W)
        info = camera_info(W, H, FX, FY, CX, CY)
        stamps = [5000.0 + i * 0.02 for i in range(60)]
        for stamp in stamps:  # as fast as the client can: a burst
            hdr = header(stamp, FRAME)
            info.header = hdr
            client.publish(image_msg(rgb, "rgb8", hdr), info)
        assert client.wait_for("depth/image", stamped(stamps[-1]), timeout=60), node.output()
        answered = [
            m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in client.messages("depth/image")
        ]
        assert answered == sorted(answered) and len(answered) < len(stamps), answered

        def all_declared() -> bool:
            diag = client.fresh_diagnostics(NODE)["pipeline"]
            received, processed = int(diag["frames received"]), int(diag["frames processed"])
            return received == len(stamps) and processed + int(diag["frames dropped"]) == received

        assert wait_until(all_declared, 10.0), client.fresh_diagnostics(NODE)
        diag = client.fresh_diagnostics(NODE)["pipeline"]
        assert int(diag["frames processed"]) == len(answered), (diag, answered)
        assert "time points (ms)" not in diag and "time publish colorized (ms)" not in diag, diag
    finally:
        client.close()
        rc = node.stop(signal.SIGTERM)
    assert rc == 0, f"depth_node exited {rc} on SIGTERM:\n{node.output()}"


@pytest.mark.ros
def test_startup_errors_exit_2_with_the_remedy(tiny_onnx, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx file")
    cases = {
        "missing": (
            node_command(str(tmp_path / "missing.onnx")),
            ["ONNX file not found", "missing.onnx"],
        ),
        "corrupt": (node_command(str(corrupt)), ["not a readable ONNX file", "mde-ros export"]),
        "backend": (
            node_command(tiny_onnx, params={"backend": "cuda-magic"}),
            ["backend: must be one of auto, onnxruntime, tensorrt, torch"],
        ),
        "range": (node_command(tiny_onnx, params={"points.stride": 0}), ["points.stride"]),
    }
    env = ros_env(random_domain_id())
    procs = {
        name: subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cmd, _) in cases.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{err}"
        for text in cases[name][1]:
            assert text in err, f"{name}: {text!r} not in\n{err}"
        assert "Traceback" not in err, err


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_params_file_holds_every_default():
    from mde_ros.ros.parameters import PARAMETERS, validate

    values = _flatten(yaml.safe_load(PARAMS_FILE.read_text())["/**/depth_node"]["ros__parameters"])
    assert values == {p.name: p.default for p in PARAMETERS}
    assert validate(values) == []
    for p in PARAMETERS:  # the YAML type is the declared type (a 0 where 0.0 is meant breaks rclpy)
        assert type(values[p.name]) is type(p.default), p.name


def test_launch_file_passes_the_installed_params_file():
    source = (REPO / "launch" / "depth.launch.py").read_text()
    tree = ast.parse(source)
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for arg in (
        "namespace",
        "params_file",
        "model",
        "backend",
        "rviz",
        "depth_node",
        "mde_ros",
        "depth.yaml",
    ):
        assert arg in names, arg
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    assert Path(REPO / "config" / "depth.rviz").is_file()
