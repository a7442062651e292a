"""First contact on a real robot, over real DDS: the library's log lines on /rosout, lifecycle."""

from __future__ import annotations

import signal

import pytest
from ros_helpers import NodeProcess, RosClient, node_command, random_domain_id, unique_namespace

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
