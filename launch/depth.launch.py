"""Launch the mde_ros depth node (and optionally rviz).

    ros2 launch mde_ros depth.launch.py namespace:=/camera model:=/path/model.onnx rviz:=true

Arguments: namespace (where `image` and `camera_info` live), params_file (default: the installed
config/depth.yaml), model and backend (override the params file when not empty), rviz.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _depth_node(context):
    overrides = {}
    for name in ("model", "backend"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    parameters = [LaunchConfiguration("params_file").perform(context)]
    if overrides:
        parameters.append(overrides)
    return [
        Node(
            package="mde_ros",
            executable="depth_node",
            name="depth_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    share = get_package_share_directory("mde_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of image/camera_info"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "depth.yaml"),
                description="depth_node parameters (YAML)",
            ),
            DeclareLaunchArgument("model", default_value="", description="Override `model` (name or .onnx)"),
            DeclareLaunchArgument(
                "backend", default_value="", description="Override `backend`: auto|onnxruntime|tensorrt|torch"
            ),
            DeclareLaunchArgument(
                "rviz", default_value="false", description="Start rviz2 with config/depth.rviz"
            ),
            OpaqueFunction(function=_depth_node),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=LaunchConfiguration("namespace"),
                arguments=["-d", os.path.join(share, "config", "depth.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
