"""First contact on a real robot, over real DDS: the library's log lines on /rosout, lifecycle."""

from __future__ import annotations

import signal
import time

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


@pytest.mark.ros
def test_lifecycle_node_transitions_over_lifecycle_msgs_services(tiny_onnx, tmp_path):
    """depth_lifecycle_node driven like a nav2 lifecycle manager: the real lifecycle_msgs services."""
    import sys

    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from ros_helpers import camera_info, header, make_image, wait_until

    from mde_ros.ros.image_conversion import image_msg

    domain, namespace = random_domain_id(), unique_namespace()
    cmd = node_command(tiny_onnx, namespace, {"input_size": 140})
    cmd[cmd.index("mde_ros.ros.depth_node")] = "mde_ros.ros.lifecycle_node"
    assert cmd[0] == sys.executable
    node = NodeProcess(cmd, domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=("depth/relative",))
    get_state = client.node.create_client(GetState, f"{namespace}/depth_node/get_state")
    change = client.node.create_client(ChangeState, f"{namespace}/depth_node/change_state")

    def call(service, request):
        assert service.wait_for_service(60), node.output()
        future = service.call_async(request)
        assert wait_until(future.done, 120), node.output()
        return future.result()

    def state() -> int:
        return call(get_state, GetState.Request()).current_state.id

    def transition(transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return call(change, request).success

    stamp = [300.0]

    def frame_answered(timeout: float = 3.0) -> bool:
        stamp[0] += 1.0
        hdr = header(stamp[0], "camera_optical_frame")
        client.info_pub.publish(camera_info(160, 120, 110.0, 105.0, 79.5, 59.5, hdr))
        client.image_pub.publish(image_msg(make_image(120, 160), "rgb8", hdr))
        sec = int(stamp[0])
        return client.wait_for("depth/relative", lambda m: m.header.stamp.sec == sec, timeout) is not None

    try:
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "model random-tiny" not in node.output()  # no model before configure
        assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
        assert "model random-tiny-depth-anything-disparity" in node.output()  # loaded in configure
        assert client.wait_connected(30), node.output()
        assert not frame_answered(), "an inactive node must not process images"
        assert transition(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
        assert frame_answered(20), node.output()
        assert transition(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
        assert not frame_answered()
        assert transition(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert wait_until(lambda: client.image_pub.get_subscription_count() == 0, 10)  # entities gone
        # configure again (a lifecycle manager's restart), then shut down cleanly
        assert transition(Transition.TRANSITION_CONFIGURE) and transition(Transition.TRANSITION_ACTIVATE)
        assert client.wait_connected(30) and frame_answered(20), node.output()
        assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN) and state() == State.PRIMARY_STATE_FINALIZED
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()


@pytest.mark.ros
def test_odometry_of_the_wrong_child_frame_is_refused_and_counted(tiny_onnx, tmp_path):
    """scale.extrinsic.frame names the moving frame the extrinsic starts from: odometry of
    another child frame would move the camera wrongly, so it is refused, counted, logged."""
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_helpers import camera_info, header, make_image

    from mde_ros.ros.image_conversion import image_msg

    domain, namespace = random_domain_id(), unique_namespace()
    params = {"input_size": 140, "scale.mode": "trajectory", "scale.extrinsic.frame": "base_link"}
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=("depth/relative",))
    try:
        odom_pub = client.node.create_publisher(
            Odometry, "odom", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        assert client.wait_connected(60), node.output()
        assert wait_until(lambda: odom_pub.get_subscription_count() > 0, 20), node.output()
        for i, child in enumerate(("base_footprint", "base_footprint", "base_link")):
            msg = Odometry(header=header(400.0 + 0.05 * i, "odom"), child_frame_id=child)
            msg.pose.pose.orientation.w = 1.0
            odom_pub.publish(msg)
            time.sleep(0.1)
        hdr = header(400.1, "camera_optical_frame")  # a frame, so that diagnostics carry the counters
        client.info_pub.publish(camera_info(160, 120, 110.0, 105.0, 79.5, 59.5, hdr))
        time.sleep(0.05)  # separate topics: camera_info first
        client.image_pub.publish(image_msg(make_image(120, 160), "rgb8", hdr))
        assert client.wait_for("depth/relative", lambda m: m.header.stamp == hdr.stamp, 20), node.output()

        def counted() -> bool:
            scale = client.fresh_diagnostics("depth_node")["scale"]
            return scale.get("counter: frame_mismatch") == "2"

        assert wait_until(counted, 10), client.fresh_diagnostics("depth_node")
        log = node.output()
        assert (
            "[ERROR]" in log and "child_frame_id is 'base_footprint' but scale.extrinsic.frame is" in log
        ), log
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()


@pytest.mark.ros
def test_lifecycle_configure_failure_is_reported_and_leaves_the_node_unconfigured(tmp_path):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    domain, namespace = random_domain_id(), unique_namespace()
    cmd = node_command(str(tmp_path / "missing.onnx"), namespace)
    cmd[cmd.index("mde_ros.ros.depth_node")] = "mde_ros.ros.lifecycle_node"
    node = NodeProcess(cmd, domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=())
    try:
        change = client.node.create_client(ChangeState, f"{namespace}/depth_node/change_state")
        get_state = client.node.create_client(GetState, f"{namespace}/depth_node/get_state")
        assert change.wait_for_service(60) and get_state.wait_for_service(10), node.output()
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        future = change.call_async(request)
        assert wait_until(future.done, 60), node.output()
        assert not future.result().success
        state = get_state.call_async(GetState.Request())
        assert wait_until(state.done, 10)
        assert state.result().current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        assert node.wait_for_output("configure failed: ONNX file not found"), node.output()
        assert node.proc.poll() is None  # still there, ready for another try
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()
