"""Start depth_node like a user would and talk to it over real DDS: shared by the tests
(test/ros_helpers.py) and the benchmarks (benchmarks/node_latency.py), run from a checkout.

The node runs in a subprocess (`python -m mde_ros.ros.depth_node --ros-args --params-file ...`);
the client is an rclpy node in the calling process with its own Context and a spinning thread.
Every run uses a random ROS_DOMAIN_ID, localhost-only discovery, a unique namespace and the
32 MB shared-memory Fast DDS profile.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # the checkout this module runs from
PARAMS_FILE = REPO / "config" / "depth.yaml"
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"


def use_local_dds() -> None:
    """Localhost discovery and the SHM profile for this process. The RMW reads these when the
    first participant is created: call before any rclpy.init."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def random_domain_id() -> int:
    return random.SystemRandom().randint(1, 100)


def unique_namespace() -> str:
    return f"/test_{uuid.uuid4().hex[:8]}/camera"


def ros_env(domain_id: int) -> dict[str, str]:
    """The node's environment: this one plus the domain, local DDS, offline hubs. One OpenMP
    thread: ONNX Runtime has its own pool (`threads`), OpenMP would only oversubscribe."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def node_command(model: str, namespace: str | None = None, params: dict[str, Any] | None = None) -> list[str]:
    """The command line a user types (the module form of the `depth_node` console script)."""
    cmd = [sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "--params-file", str(PARAMS_FILE)]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for name, value in {"model": model, **(params or {})}.items():
        cmd += ["-p", f"{name}:={_param_text(value)}"]
    return cmd


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NodeProcess:
    """depth_node in a subprocess; output goes to a log file read back by the tests."""

    def __init__(self, cmd: list[str], domain_id: int, log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=ros_env(domain_id), stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> bool:
        return wait_until(lambda: text in self.output(), timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_until(predicate: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


class RosClient:
    """A client rclpy node: publishes image + camera_info, records every output topic (clear()
    what was read in long runs) and the /diagnostics."""

    OUTPUTS = ("depth/image", "depth/camera_info", "depth/points", "depth/colorized", "depth/relative")

    def __init__(self, domain_id: int, namespace: str, outputs: tuple[str, ...] = OUTPUTS) -> None:
        use_local_dds()
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.namespace = namespace
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("mde_ros_client", namespace=namespace, context=self.context)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", reliable)
        self._lock = threading.Condition()
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self.subs = []
        types = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/points": PointCloud2}
        types["depth/colorized"] = types["depth/relative"] = Image
        for topic in outputs:
            self._subscribe(types[topic], topic, reliable)
        self._subscribe(DiagnosticArray, "/diagnostics", QoSProfile(depth=100))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def record(self, msg_type: Any, topic: str, qos: Any) -> None:
        """Also record `topic` (e.g. /rosout); read it with `messages` / `wait_for`."""
        self._subscribe(msg_type, topic, qos)

    def _subscribe(self, msg_type: Any, topic: str, qos: Any) -> None:
        self.received[topic] = []

        def callback(msg: Any, topic: str = topic) -> None:
            with self._lock:
                self.received[topic].append((time.monotonic(), msg))
                self._lock.notify_all()

        self.subs.append(self.node.create_subscription(msg_type, topic, callback, qos))

    # --- waiting --------------------------------------------------------------------------------

    def wait_connected(self, timeout: float = 30.0) -> bool:
        """Until the node subscribes to our inputs and publishes to our outputs."""

        def connected() -> bool:
            pubs = self.image_pub.get_subscription_count() and self.info_pub.get_subscription_count()
            return bool(pubs) and all(s.get_publisher_count() > 0 for s in self.subs)

        ok = wait_until(connected, timeout)
        time.sleep(0.3)  # let the node's side of discovery settle as well
        return ok

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return [msg for _, msg in self.received[topic]]

    def clear(self) -> None:
        with self._lock:
            for items in self.received.values():
                items.clear()

    def wait_for(
        self, topic: str, predicate: Callable[[Any], bool] = lambda m: True, timeout: float = 10.0
    ) -> Any | None:
        """First message on `topic` (already received or arriving) that satisfies `predicate`."""
        found = self.wait_for_timed(topic, predicate, timeout)
        return None if found is None else found[1]

    def wait_for_timed(
        self, topic: str, predicate: Callable[[Any], bool] = lambda m: True, timeout: float = 10.0
    ) -> tuple[float, Any] | None:
        """Like wait_for, with the time.monotonic() at which the message arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for arrived, msg in self.received[topic]:
                    if predicate(msg):
                        return arrived, msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def node_diagnostics(self, node_name: str, timeout: float = 5.0) -> dict[str, dict[str, str]] | None:
        """Latest diagnostics of `node_name` (status name suffix -> {key: value, 'level', 'message'})."""
        start = time.monotonic()
        prefix = f"{self.namespace}/{node_name}:"
        msg = self.wait_for(
            "/diagnostics",
            lambda m: any(s.name.startswith(prefix) for s in m.status) and time.monotonic() > start,
            timeout,
        )
        if msg is None:
            return None
        with self._lock:
            ours = [
                m
                for _, m in self.received["/diagnostics"]
                if m.status and m.status[0].name.startswith(prefix)
            ]
        return diagnostics_dict(ours[-1])

    def fresh_diagnostics(self, node_name: str, timeout: float = 5.0) -> dict[str, dict[str, str]] | None:
        """Diagnostics published after this call (the node publishes at ~1 Hz)."""
        with self._lock:
            self.received["/diagnostics"].clear()
        return self.node_diagnostics(node_name, timeout)

    # --- publishing -----------------------------------------------------------------------------

    def publish(self, image: Any, info: Any | None) -> None:
        if info is not None:
            self.info_pub.publish(info)
        self.image_pub.publish(image)

    def publish_until(
        self,
        image: Any,
        info: Any,
        topic: str,
        predicate: Callable[[Any], bool] = lambda m: True,
        timeout: float = 120.0,
        period: float = 5.0,
    ) -> Any | None:
        """Publish CameraInfo then the image, again every `period` s, until `topic` has a message that
        satisfies `predicate`: an image that overtook its CameraInfo on a loaded machine (two topics,
        no order between them) is dropped by the node as `no_camera_info`, the next one is not."""
        deadline = time.monotonic() + timeout
        while True:
            self.info_pub.publish(info)
            time.sleep(0.05)
            self.image_pub.publish(image)
            remaining = deadline - time.monotonic()
            msg = self.wait_for(topic, predicate, max(0.0, min(period, remaining)))
            if msg is not None or remaining <= period:
                return msg

    def set_parameters(self, node_name: str, values: dict[str, Any], timeout: float = 10.0) -> list[Any]:
        """Call the node's real SetParameters service; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"{self.namespace}/{node_name}/set_parameters")
        try:
            assert client.wait_for_service(timeout), "set_parameters service not available"
            request = SetParameters.Request()
            request.parameters = [Parameter(n, value=v).to_parameter_msg() for n, v in values.items()]
            future = client.call_async(request)
            assert wait_until(future.done, timeout), "set_parameters call timed out"
            return list(future.result().results)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)  # before destroying what the spinning thread waits on
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def diagnostics_dict(msg: Any) -> dict[str, dict[str, str]]:
    out = {}
    for status in msg.status:
        key = status.name.rsplit(":", 1)[-1].strip()
        values = {kv.key: kv.value for kv in status.values}
        values["level"] = str(status.level[0] if isinstance(status.level, bytes) else status.level)
        values["message"] = status.message
        out[key] = values
    return out


# --- messages -------------------------------------------------------------------------------------


def header(stamp_s: float, frame_id: str) -> Any:
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    h.stamp.sec = int(stamp_s)
    h.stamp.nanosec = round((stamp_s - int(stamp_s)) * 1e9)
    return h


def camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float, hdr: Any = None) -> Any:
    from mde_ros.geometry.intrinsics import CameraIntrinsics
    from mde_ros.ros.sample_player import camera_info_msg

    return camera_info_msg(CameraIntrinsics(fx, fy, cx, cy, width, height), hdr)
