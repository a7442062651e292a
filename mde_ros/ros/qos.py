"""QoS profiles from the `qos.*` parameters (mde_ros.config.QosConfig).

Inputs default to the sensor-data profile (best effort, keep last): a best-effort subscription
matches both best-effort and reliable camera drivers, and the node only wants the newest frame.
Outputs default to reliable: rviz and most consumers subscribe reliable, and a reliable publisher
also serves best-effort subscribers.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..config import RELIABILITIES, QosEndpointConfig


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """Keep-last `depth`, volatile, with the named reliability."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"unknown QoS reliability {reliability!r}; choose one of {', '.join(RELIABILITIES)}")
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy[reliability.upper()],
        durability=DurabilityPolicy.VOLATILE,
    )


def endpoint_qos(endpoint: QosEndpointConfig) -> QoSProfile:
    return qos_profile(endpoint.reliability, endpoint.depth)


def overridable() -> dict:
    """kwargs for create_publisher / create_subscription that accept ROS 2's standard per-topic
    overrides, e.g. `qos_overrides./camera/image.subscription.reliability: reliable` (history,
    depth, reliability; read at start-up). The `qos.*` parameters give every topic's default."""
    from rclpy.qos_overriding_options import QoSOverridingOptions

    return {"qos_overriding_options": QoSOverridingOptions.with_default_policies()}
