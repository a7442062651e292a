"""frame_id checks for the scale inputs: `scale.sparse.frame` (sparse_points' header.frame_id) and
`scale.extrinsic.frame` (the moving frame of odom: Odometry.child_frame_id).

The extrinsics (`scale.sparse.*`, `scale.extrinsic.*`) hold only for one frame; a message from
another frame would give a silently wrong scale. Empty = accept any frame (the old behaviour).
A mismatch is refused, counted in the scale diagnostics ("counter: frame_mismatch") and logged
as a throttled ERROR.
"""

from __future__ import annotations

from typing import Any

MISMATCH = "frame_mismatch"
LOG_PERIOD_S = 5.0


class FrameCheck:
    def __init__(self, node: Any, estimator: Any, parameter: str, expected: str) -> None:
        self.node, self.estimator = node, estimator
        self.parameter, self.expected = parameter, expected.strip()

    def accepts(self, frame_id: str, topic: str, field: str = "header.frame_id") -> bool:
        if not self.expected or frame_id == self.expected:
            return True
        self.estimator.count(MISMATCH)
        self.node.get_logger().error(
            f"{self.node.resolve_topic_name(topic)}: {field} is {frame_id!r} but {self.parameter} is "
            f"{self.expected!r}: message refused (its extrinsic would give a wrong scale). Publish in "
            f"{self.expected!r} or set {self.parameter} (empty = accept any frame).",
            throttle_duration_sec=LOG_PERIOD_S,
        )
        return False
