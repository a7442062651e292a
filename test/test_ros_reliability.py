"""No single message may kill or blind depth_node: malformed inputs and requests over real DDS,
bounded work per message (measured as the node's peak RSS), start-up errors, clean shutdown."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import (
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
from test_ros_node import CX, CY, FRAME, FX, FY, NODE, H, W

from mde_ros.geometry.pointcloud import POINT_DTYPE
from mde_ros.ros.image_conversion import image_msg
from mde_ros.ros.pointcloud import cloud_msg

RSS_BOUND_MB = 300  # README: a 640x4 frame or a 10^6-point cloud raises the peak RSS by less


@pytest.fixture(scope="module")
def ros(tiny_onnx, tmp_path_factory):
    """A sparse-mode node (so that it subscribes to sparse_points) and a client."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    domain, namespace = random_domain_id(), unique_namespace()
    log = tmp_path_factory.mktemp("node") / "depth_node.log"
    params = {"input_size": 140, "scale.mode": "sparse", "qos.input.reliability": "reliable"}
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, log)
    # random weights never reach a sparse scale: the relative depth is the node's answer
    client = RosClient(domain, namespace, outputs=("depth/relative",))
    client.points_pub = client.node.create_publisher(
        PointCloud2, "sparse_points", QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    )
    try:
        assert client.wait_connected(60), f"node did not come up:\n{node.output()}"
        assert wait_until(lambda: client.points_pub.get_subscription_count() > 0, 20), node.output()
        yield node, client
    finally:
        client.close()
        rc = node.stop(signal.SIGINT)
    assert rc == 0, f"depth_node exited {rc} on SIGINT:\n{node.output()}"
    assert "processing failed" not in node.output(), node.output()


_stamp = [300.0]


def answered(client: RosClient, rgb=None, width: int = W, height: int = H, timeout: float = 20.0) -> bool:
    """Publish one frame with its CameraInfo; whether the node answers it with a depth image."""
    _stamp[0] += 0.1
    hdr = header(_stamp[0], FRAME)
    client.info_pub.publish(camera_info(width, height, FX, FY, width / 2 - 0.5, height / 2 - 0.5, hdr))
    time.sleep(0.05)
    client.image_pub.publish(image_msg(make_image(height, width) if rgb is None else rgb, "rgb8", hdr))
    sec, nsec = hdr.stamp.sec, hdr.stamp.nanosec
    match = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nsec)  # noqa: E731
    return client.wait_for("depth/relative", match, timeout=timeout) is not None


def counted(client: RosClient, status: str, key: str, at_least: int = 1) -> bool:
    def check() -> bool:
        diag = client.fresh_diagnostics(NODE)
        return diag is not None and int(diag[status].get(key, "0")) >= at_least

    return wait_until(check, 10.0, period=0.1)


def _raw_set_parameters(client: RosClient, parameters: list) -> object:
    """Send a SetParameters request as any client on the network could; returns its future."""
    from rcl_interfaces.srv import SetParameters

    service = client.node.create_client(SetParameters, f"{client.namespace}/{NODE}/set_parameters")
    assert service.wait_for_service(10.0)
    request = SetParameters.Request()
    request.parameters = parameters
    return service.call_async(request)


@pytest.mark.ros
def test_empty_organized_cloud_is_counted(ros):
    node, client = ros
    assert answered(client), node.output()
    cloud = cloud_msg(np.zeros((1, 4), POINT_DTYPE), header(_stamp[0], FRAME))
    cloud.height, cloud.width, cloud.row_step, cloud.data = 0, 4, 64, b""
    client.points_pub.publish(cloud)
    assert counted(client, "scale", "counter: empty_point_cloud"), node.output()
    assert node.wait_for_output("sparse_points: empty cloud ignored"), node.output()
    assert node.proc.poll() is None and answered(client), node.output()


@pytest.mark.ros
def test_invalid_parameter_type_codes_do_not_kill_the_node(ros):
    from rcl_interfaces.msg import Parameter, ParameterValue

    node, client = ros
    for code in (99, 255):  # rclpy's own service handler raises ValueError on these
        _raw_set_parameters(client, [Parameter(name="points.stride", value=ParameterValue(type=code))])
    assert counted(client, "pipeline", "bad input: callback_exception", 2), node.output()
    out = node.output()
    # Two clients, two requests in any order: one traceback for both (same type, same place).
    assert out.count("Traceback") == 1 and "is not a valid Parameter.Type" in out, out
    assert node.proc.poll() is None and answered(client), out


@pytest.mark.ros
def test_empty_parameter_name_is_rejected(ros):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue

    _, client = ros
    value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=2)
    future = _raw_set_parameters(client, [Parameter(name="", value=value)])
    assert wait_until(future.done, 10.0)
    (result,) = future.result().results
    assert not result.successful and "name must not be empty" in result.reason


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def _reset_peak_rss(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS (start-up peaks excluded)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.mark.ros
def test_work_per_message_is_bounded(ros):
    node, client = ros
    pid = node.proc.pid
    for _ in range(3):  # warm up: buffers of the normal frame size exist
        assert answered(client), node.output()
    _reset_peak_rss(pid)
    before = _peak_rss_mb(pid)

    assert not answered(client, make_image(4, 640), width=640, height=4, timeout=2.0)
    assert counted(client, "pipeline", "bad input: extreme_aspect_ratio"), node.output()
    assert node.wait_for_output("more elongated than 8:1"), node.output()

    rng = np.random.default_rng(0)
    cloud = np.zeros(1_000_000, POINT_DTYPE)
    z = rng.uniform(1.0, 5.0, cloud.size).astype(np.float32)
    cloud["x"] = (rng.uniform(0, W, cloud.size) - CX) * z / FX
    cloud["y"] = (rng.uniform(0, H, cloud.size) - CY) * z / FY
    cloud["z"] = z
    client.points_pub.publish(cloud_msg(cloud, header(_stamp[0] + 0.1, FRAME)))
    del cloud
    assert counted(client, "scale", "counter: points_subsampled"), node.output()
    assert answered(client), node.output()  # the frame fitted to the subsampled points
    scale = client.fresh_diagnostics(NODE)["scale"]
    assert "sparse points" in scale["detail"], scale  # the points reached the fit
    assert node.proc.poll() is None
    growth = _peak_rss_mb(pid) - before
    assert growth < RSS_BOUND_MB, f"peak RSS grew by {growth:.0f} MB"


@pytest.mark.ros
def test_sigint_while_publishing_stops_cleanly(tiny_onnx, tmp_path):
    """The worker is stopped before the context goes: no 'processing failed' on the way out."""
    domain, namespace = random_domain_id(), unique_namespace()
    params = {"input_size": 140, "scale.mode": "fixed"}  # metric: every output is published
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, tmp_path / "n.log")
    client = RosClient(domain, namespace)
    stop = threading.Event()
    try:
        assert client.wait_connected(60), node.output()
        assert answered(client), node.output()

        def stream() -> None:
            while not stop.is_set():
                hdr = header(time.time(), FRAME)
                client.publish(
                    image_msg(make_image(H, W), "rgb8", hdr), camera_info(W, H, FX, FY, CX, CY, hdr)
                )
                time.sleep(0.01)

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        count = len(client.messages("depth/points"))
        assert wait_until(lambda: len(client.messages("depth/points")) > count + 3, 30), node.output()
        rc = node.stop(signal.SIGINT)
    finally:
        stop.set()
        client.close()
        node.stop(signal.SIGKILL)
    out = node.output()
    assert rc == 0 and "processing failed" not in out and "Traceback" not in out, out


@pytest.mark.ros
def test_every_startup_error_exits_2_with_one_line(tiny_onnx, tmp_path):
    a_file = tmp_path / "engines_file"
    a_file.write_text("not a folder")
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("/**/depth_node:\n  ros__parameters: [unclosed\n")
    default = node_command("default")
    cases = {
        "engine_dir is a file": (
            node_command("default", params={"engine_dir": str(a_file)}),
            "is a file, not a folder",
        ),
        "engine_dir cannot be created": (
            node_command("default", params={"engine_dir": str(a_file / "sub")}),
            "cannot be created",
        ),
        "-p without a value": (node_command(tiny_onnx) + ["-p", "points.stride"], "points.stride"),
        "missing params file": (
            default[: default.index("--params-file") + 1] + [str(tmp_path / "none.yaml")],
            "none.yaml",
        ),
        "malformed params file": (
            default[: default.index("--params-file") + 1] + [str(broken_yaml)],
            "broken.yaml",
        ),
    }
    env = ros_env(random_domain_id())
    procs = {
        name: subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cmd, _) in cases.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = [line for line in (out + err).splitlines() if line.startswith("depth_node: error:")]
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{out}{err}"
        assert len(lines) == 1 and cases[name][1] in lines[0], f"{name}:\n{out}{err}"
        assert "Traceback" not in out + err, f"{name}:\n{out}{err}"
