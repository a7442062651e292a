"""First contact on a real robot, over real DDS: the library's log lines on /rosout, lifecycle."""

from __future__ import annotations

import signal

import pytest
from ros_helpers import NodeProcess, RosClient, node_command, random_domain_id, unique_namespace, wait_until

INFO, WARN = 20, 30  # rcl_interfaces/msg/Log levels


def _level(msg) -> int:
    return msg.level[0] if isinstance(msg.level, bytes) else int(msg.level)


@pytest.mark.ros
@pytest.mark.slow
def test_rosout_carries_the_library_log_lines_at_their_levels(tmp_path):
    """The default model with an empty engine folder: the node builds its ONNX first (~1 min).
    /rosout must say so (start, progress, end) and say which backend `auto` chose and why."""
    from rcl_interfaces.msg import Log
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    domain, namespace = random_domain_id(), unique_namespace()
    client = RosClient(domain, namespace, outputs=())
    # rcl's /rosout publisher keeps 1000 lines for late joiners (transient local, 10 s lifespan);
    # subscribing before the node starts loses nothing either way.
    rosout = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip
    client.record(Log, "/rosout", rosout)
    params = {"model": "default", "engine_dir": str(tmp_path / "engines"), "input_size": 140}
    node = NodeProcess(node_command("default", namespace, params), domain, tmp_path / "node.log")
    try:

        def line(text: str, timeout: float = 10.0):
            return client.wait_for("/rosout", lambda m: text in m.msg, timeout)

        assert line("waiting for", timeout=280) is not None, node.output()  # the node's ready line
        building = line("building the default ONNX")
        assert building is not None, node.output()
        assert _level(building) == INFO and building.name.endswith(".depth_node.mde_ros.models.default_model")
        done = line("building the default ONNX: done in")
        assert done is not None and _level(done) == INFO, node.output()
        choice = line("backend auto -> onnxruntime CPU")
        assert choice is not None and _level(choice) == INFO, node.output()
        assert choice.name.endswith("depth_node.mde_ros.inference.factory"), choice.name
        why = line("backend auto: not using TensorRT (")
        assert why is not None and _level(why) == INFO, node.output()
        notice = line("are silent (REP 118: metres only)")
        assert notice is not None and _level(notice) == WARN, node.output()
        # the console gets the same lines through the ROS logger (once, not twice via Python)
        assert node.output().count("backend auto -> onnxruntime CPU") == 1, node.output()
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()


@pytest.mark.ros
def test_standard_qos_overrides_change_single_topics(tiny_onnx, tmp_path):
    """`qos_overrides./<topic>.subscription|publisher.reliability` (rclpy's QoSOverridingOptions)
    beat the qos.* defaults for that topic only; the others keep the qos.* profile."""
    from rclpy.qos import ReliabilityPolicy

    domain, namespace = random_domain_id(), unique_namespace()
    params = {
        f"qos_overrides.{namespace}/image.subscription.reliability": "reliable",
        f"qos_overrides.{namespace}/depth/relative.publisher.reliability": "best_effort",
    }
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=())
    try:

        def reliability(topic: str, kind: str):
            infos = getattr(client.node, f"get_{kind}_info_by_topic")(f"{namespace}/{topic}")
            ours = [i for i in infos if i.node_name == "depth_node"]
            return ours[0].qos_profile.reliability if ours else None

        ready = ("image", "subscriptions"), ("depth/image", "publishers")
        assert wait_until(lambda: all(reliability(*r) is not None for r in ready), 60), node.output()
        assert reliability("image", "subscriptions") == ReliabilityPolicy.RELIABLE  # overridden
        assert reliability("camera_info", "subscriptions") == ReliabilityPolicy.BEST_EFFORT  # qos.input.*
        assert reliability("depth/relative", "publishers") == ReliabilityPolicy.BEST_EFFORT  # overridden
        assert reliability("depth/image", "publishers") == ReliabilityPolicy.RELIABLE  # qos.output.*
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()
