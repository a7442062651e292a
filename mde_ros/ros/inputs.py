"""The camera image subscription: raw sensor_msgs/Image on `image`, or CompressedImage on
`<resolved image topic>/compressed`, the name image_transport's compressed plugin publishes
(e.g. /camera/color/image_raw/compressed), so remapping `image` works for both. Decoding is
`image_conversion.rgb_from_msg` (jpeg/png via OpenCV; undecodable data is a counted reason)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def subscribe_image(
    node: Any, transport: str, callback: Callable[[Any], None], qos: Any, **kwargs: Any
) -> tuple[Any, str]:
    """(subscription, resolved topic name) for `image_transport` raw | compressed."""
    from sensor_msgs.msg import CompressedImage, Image

    topic = node.resolve_topic_name("image")
    if transport == "compressed":
        topic += "/compressed"
        return node.create_subscription(CompressedImage, topic, callback, qos, **kwargs), topic
    return node.create_subscription(Image, "image", callback, qos, **kwargs), topic
