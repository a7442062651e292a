"""depth_node over real ROS 2 (Fast DDS): the node runs in a subprocess started the way a user
starts it (`--params-file config/depth.yaml -p model:=...`), the client is an rclpy node here."""

from __future__ import annotations

import ast
import signal
import subprocess
import threading
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


def _node_and_client(onnx: str, folder, params: dict):
    domain, namespace = random_domain_id(), unique_namespace()
    node = NodeProcess(node_command(onnx, namespace, params), domain, folder / "depth_node.log")
    client = RosClient(domain, namespace)
    try:
        assert client.wait_connected(60), f"node did not come up:\n{node.output()}"
        yield node, client
    finally:
        client.close()
        rc = node.stop(signal.SIGINT)
    assert rc == 0, f"depth_node exited {rc} on SIGINT:\n{node.output()}"


@pytest.fixture(scope="module")
def ros(tiny_onnx, tmp_path_factory):
    """One node process + one client for the module (node start-up costs ~3 s): relative model,
    default scale.mode none, so only depth/relative, depth/colorized and depth/camera_info flow."""
    yield from _node_and_client(tiny_onnx, tmp_path_factory.mktemp("node"), {"input_size": 140})


@pytest.fixture(scope="module")
def ros_metric(tiny_onnx, tmp_path_factory):
    """The same model with a fixed scale: metres on depth/image and depth/points (REP 118)."""
    params = {"input_size": 140, "scale.mode": "fixed"}
    yield from _node_and_client(tiny_onnx, tmp_path_factory.mktemp("node_metric"), params)


_stamp = [1000.0]


def send(client: RosClient, rgb=None, info=True, image=None, p=None, **info_kw) -> float:
    """Publish one frame (and its CameraInfo, with projection `p` when given); returns its stamp."""
    _stamp[0] += 0.5
    hdr = header(_stamp[0], FRAME)
    if info:
        kw = dict(width=W, height=H, fx=FX, fy=FY, cx=CX, cy=CY) | info_kw
        info_msg = camera_info(hdr=hdr, **kw)
        if p is not None:
            info_msg.p = p
        client.info_pub.publish(info_msg)
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
    assert client.wait_for("depth/relative", stamped(stamp), timeout=1.5) is None
    assert node.wait_for_output("no CameraInfo received on"), node.output()
    diag = client.fresh_diagnostics(NODE)
    assert diag["pipeline"]["message"].startswith("waiting for CameraInfo"), diag
    assert diag["pipeline"]["level"] == "1"


@pytest.mark.ros
def test_output_contract(ros):
    """Relative model, no scale (the defaults): unit-less depth on depth/relative only (REP 118)."""
    _, client = ros
    rgb = make_image(H, W, seed=3)
    stamp = send(client, rgb)
    relative_msg = client.wait_for("depth/relative", stamped(stamp))
    assert relative_msg is not None, "no depth/relative"
    assert (relative_msg.encoding, relative_msg.height, relative_msg.width) == ("32FC1", H, W)
    assert relative_msg.header.frame_id == FRAME
    depth = array_from_msg(relative_msg)
    finite = np.isfinite(depth)
    assert finite.mean() > 0.5 and (depth[finite] > 0).all()
    assert 0.5 < np.nanmedian(depth) < 2.0  # unit-less, normalised to a median of ~1 (a sampled median)

    info = client.wait_for("depth/camera_info", stamped(stamp))
    assert info is not None and info.header.frame_id == FRAME
    assert (info.width, info.height, info.k[0], info.k[2]) == (W, H, FX, CX)

    colorized = client.wait_for("depth/colorized", stamped(stamp))
    assert (colorized.encoding, colorized.height, colorized.width) == ("bgr8", H, W)
    assert colorized.header.frame_id == FRAME
    assert array_from_msg(colorized)[finite].max() > 0
    # the metres topics stay silent: nothing unit-less on them, ever
    assert client.wait_for("depth/image", timeout=0.5) is None
    assert client.wait_for("depth/points", timeout=0.1) is None


@pytest.mark.ros
def test_cloud_contract(ros_metric):
    """Metric (fixed scale): depth/points is the organized back-projection of depth/image."""
    _, client = ros_metric
    rgb = make_image(H, W, seed=3)
    stamp = send(client, rgb)
    depth = array_from_msg(client.wait_for("depth/image", stamped(stamp)))
    finite = np.isfinite(depth)
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
def test_cloud_uses_p_not_k(ros_metric):
    """A rectified image is described by P: with P != K (like image_proc's rectify test), the cloud
    follows P; K is what the unrectified camera had."""
    _, client = ros_metric
    pfx, pfy, pcx, pcy = 70.0, 72.0, 75.0, 62.0
    stamp = send(client, p=[pfx, 0.0, pcx, 0.0, 0.0, pfy, pcy, 0.0, 0.0, 0.0, 1.0, 0.0])
    depth = array_from_msg(client.wait_for("depth/image", stamped(stamp)))
    cloud = cloud_array(client.wait_for("depth/points", stamped(stamp)))
    finite = np.isfinite(depth)
    v, u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(cloud["x"][finite], ((u - pcx) * depth / pfx)[finite], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"][finite], ((v - pcy) * depth / pfy)[finite], rtol=1e-5, atol=1e-6)


def _failures(diag: dict) -> dict[str, int]:
    """Frames lost to a processing failure or an internal error, by diagnostics key."""
    pipeline = diag["pipeline"]
    keys = [k for k in pipeline if k.endswith("processing_error") or k.startswith("internal_error")]
    return {k: int(pipeline[k]) for k in keys}


@pytest.mark.ros
def test_live_stride_changes_while_streaming_never_fail_a_frame(ros_metric):
    """points.stride flips between 1 and 3 while frames stream: every frame uses one stride."""
    node, client = ros_metric
    before = _failures(client.fresh_diagnostics(NODE))
    client.clear()
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            send(client)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        for i in range(60):
            (result,) = client.set_parameters(NODE, {"points.stride": 3 if i % 2 == 0 else 1})
            assert result.successful, result.reason
    finally:
        stop.set()
        streamer.join(5.0)
        client.set_parameters(NODE, {"points.stride": 1})
    clouds = client.messages("depth/points")
    assert len(clouds) >= 5, node.output()
    assert {(c.height, c.width) for c in clouds} <= {(H, W), (40, 54)}
    time.sleep(0.5)  # the last frame's outcome reaches the next diagnostics message
    assert _failures(client.fresh_diagnostics(NODE)) == before, node.output()


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
def test_relative_publish_false_silences_depth_relative(ros):
    _, client = ros
    (ok,) = client.set_parameters(NODE, {"relative.publish": False})
    assert ok.successful
    try:
        stamp = send(client)
        assert client.wait_for("depth/colorized", stamped(stamp)) is not None
        assert client.wait_for("depth/relative", stamped(stamp), timeout=1.0) is None
        assert client.wait_for("depth/image", stamped(stamp), timeout=0.1) is None
    finally:
        client.set_parameters(NODE, {"relative.publish": True})
    stamp = send(client)
    assert client.wait_for("depth/relative", stamped(stamp)) is not None


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
    assert client.wait_for("depth/relative", stamped(good_stamp)) is not None, node.output()
    assert client.wait_for("depth/relative", stamped(bad_stamp), timeout=0.1) is None
    assert node.proc.poll() is None


@pytest.mark.ros
def test_diagnostics_content(ros):
    _, client = ros
    for _ in range(3):  # each one answered before the next: none is dropped
        assert client.wait_for("depth/relative", stamped(send(client))) is not None
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
        assert client.wait_for("depth/relative", stamped(send(client))) is not None
    _stamp[0] += 1.0  # two frames the camera sent never reached the node
    assert client.wait_for("depth/relative", stamped(send(client))) is not None
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
    # Only depth/relative is subscribed: the cloud and colour map work must be skipped.
    client = RosClient(domain, namespace, outputs=("depth/relative",))
    try:
        assert client.wait_connected(60), node.output()
        rgb = make_image(H, W)
        info = camera_info(W, H, FX, FY, CX, CY)
        stamps = [5000.0 + i * 0.02 for i in range(60)]
        for stamp in stamps:  # as fast as the client can: a burst
            hdr = header(stamp, FRAME)
            info.header = hdr
            client.publish(image_msg(rgb, "rgb8", hdr), info)
        assert client.wait_for("depth/relative", stamped(stamps[-1]), timeout=60), node.output()
        answered = [
            m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in client.messages("depth/relative")
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
def test_internal_error_is_logged_once_with_traceback_counted_and_node_stays_up(tmp_path):
    """A real ONNX whose output ([B, 2, H, W]) the postprocess cannot read: a bug, not bad input."""
    from mde_ros.models.testing import export_oracle_disparity_onnx

    broken = export_oracle_disparity_onnx(tmp_path / "two_channel_output.onnx", channels=2)
    domain, namespace = random_domain_id(), unique_namespace()
    node = NodeProcess(node_command(str(broken), namespace), domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=("depth/relative",))  # relative model, no scale
    try:
        assert client.wait_connected(60), node.output()

        def counted(at_least: int) -> bool:
            for _ in range(3):
                send(client)
            diag = client.fresh_diagnostics(NODE) or {"pipeline": {}}
            return int(diag["pipeline"].get("internal_error:ValueError", "0")) >= at_least

        assert wait_until(lambda: counted(3), 30.0), (client.fresh_diagnostics(NODE), node.output())
        diag = client.fresh_diagnostics(NODE)["pipeline"]
        assert diag["level"] == "2" and "internal_error:ValueError" in diag["message"], diag
        assert "bad input: processing_error" not in diag, diag
        log = node.output()
        assert log.count("Traceback (most recent call last)") == 1, log  # once per type, in full
        assert "[ERROR]" in log and "internal error" in log and "pipeline.py" in log, log
        assert client.messages("depth/relative") == []
        assert node.proc.poll() is None  # still serving
    finally:
        client.close()
        rc = node.stop(signal.SIGINT)
    assert rc == 0, node.output()


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


def test_params_file_holds_every_default():
    """config/depth.yaml has every setting of mde_ros.config, no other, each at its default."""
    from mde_ros.config import NodeConfig, flat, from_flat, settings
    from mde_ros.ros.parameters import validate

    tree = yaml.safe_load(PARAMS_FILE.read_text())["/**/depth_node"]["ros__parameters"]
    from_yaml = from_flat(NodeConfig, tree)  # a name the config lacks raises
    assert from_yaml == NodeConfig()
    values = flat(from_yaml)
    assert list(values) == [s.name for s in settings()]
    assert validate(values) == []
    for s in settings():  # the YAML type is the declared type (a 0 where 0.0 is meant breaks rclpy)
        assert type(values[s.name]) is type(s.default), s.name


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
