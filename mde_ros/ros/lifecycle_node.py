"""depth_node as a managed (lifecycle) node, for nav2-style lifecycle managers.

    depth_lifecycle_node --ros-args --params-file config/depth.yaml
    python -m mde_ros.ros.lifecycle_node --ros-args --params-file config/depth.yaml   # the same

Same parameters, topics and behaviour as `depth_node`, driven by lifecycle_msgs transitions:
- unconfigured: parameters declared (settable), nothing else.
- configure: parameters checked, model loaded (a default-model ONNX build or TensorRT engine
  build happens here), publishers, subscriptions, worker created; a bad parameter or model fails
  the transition (back to unconfigured) with the reason logged.
- activate / deactivate: images are taken / ignored (inactive: no processing, no output).
- cleanup (and shutdown, error): worker stopped, model freed, the configure-time publishers,
  subscriptions and timers destroyed; configure can run again.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ..errors import MdeRosError
from .depth_node import DepthNode
from .depth_node import main as node_main
from .parameters import read_all

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class DepthLifecycleNode(DepthNode, LifecycleNode):
    MANAGED = True

    def __init__(self, **kwargs: Any) -> None:
        self._configured: set[Any] = set()
        super().__init__(**kwargs)

    def _entities(self) -> set[Any]:
        return {*self.publishers, *self.subscriptions, *self.timers}

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entities()
        try:
            self.params = read_all(self)  # values set while unconfigured count
            self.configure()
        except (MdeRosError, ParameterException, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._destroy(self._entities() - before)
            return FAILURE
        self._configured = self._entities() - before
        self.get_logger().info("configured: activate to start processing images")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unconfigure()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unconfigure()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unconfigure()
        return SUCCESS

    def _unconfigure(self) -> None:
        self.active = False
        if not self._configured:
            return
        self.release()
        self.remove_on_set_parameters_callback(self._on_set_parameters)
        self.remove_post_set_parameters_callback(self._after_set_parameters)
        self._destroy(self._configured)
        self._configured = set()
        del self._worker  # close() then has nothing to release

    def _destroy(self, entities: set[Any]) -> None:
        publishers, subscriptions = set(self.publishers), set(self.subscriptions)
        for entity in entities:
            if entity in publishers:
                self.destroy_publisher(entity)
            elif entity in subscriptions:
                self.destroy_subscription(entity)
            else:
                self.destroy_timer(entity)


def main(args: list[str] | None = None) -> int:
    return node_main(args, DepthLifecycleNode)


if __name__ == "__main__":
    sys.exit(main())
