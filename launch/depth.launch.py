"""Launch the mde_ros depth node on a real camera driver's topics (and optionally rviz).

    # RealSense (realsense2_camera rs_launch.py: /camera/camera/color/..., camera_color_optical_frame)
    ros2 launch mde_ros depth.launch.py image:=/camera/camera/color/image_raw \
        camera_info:=/camera/camera/color/camera_info rviz:=true fixed_frame:=camera_color_optical_frame
    # usb_cam (usb_cam_node_exe: /image_raw, /camera_info, frame "camera"), jpeg over the network
    ros2 launch mde_ros depth.launch.py image:=/image_raw camera_info:=/camera_info \
        image_transport:=compressed rviz:=true fixed_frame:=camera

`ros2 launch mde_ros depth.launch.py --show-args` lists every argument with its description.
Input topics are remaps of the node's relative names; outputs (depth/image, depth/points,
depth/relative, depth/colorized, depth/camera_info) live in `namespace`.
"""

import difflib
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

# name, default, description: ONE table (the launch file declares exactly these; a test reads it).
ARGUMENTS = (
    ("namespace", "", "Namespace of the node and its outputs (depth/image, depth/points, ...)."),
    ("image", "image", "Camera image topic (remap of `image`), e.g. /camera/camera/color/image_raw."),
    ("camera_info", "camera_info", "CameraInfo topic (remap), e.g. /camera/camera/color/camera_info."),
    ("image_transport", "raw", "raw: sensor_msgs/Image; compressed: CompressedImage on <image>/compressed."),
    ("odom", "odom", "scale.mode trajectory: nav_msgs/Odometry topic (remap of `odom`)."),
    ("pose", "pose", "scale.mode trajectory, scale.pose_type pose: PoseStamped topic (remap of `pose`)."),
    ("sparse_points", "sparse_points", "scale.mode sparse: PointCloud2 of metric points (remap)."),
    ("params_file", "", "depth_node parameters (YAML); empty = the installed config/depth.yaml."),
    ("model", "", "Override `model`: default, a registry name or an .onnx path; empty = params file."),
    ("backend", "", "Override `backend`: auto | onnxruntime | tensorrt | torch; empty = params file."),
    ("lifecycle", "false", "true: run depth_lifecycle_node (managed; a lifecycle manager activates it)."),
    ("log_level", "info", "Node log level: debug | info | warn | error | fatal."),
    ("rviz", "false", "true: start rviz2 with config/depth.rviz in the node's namespace."),
    ("fixed_frame", "", "rviz fixed frame (rviz2 -f): the images' frame_id, e.g. camera_color_optical_frame"),
)  # fmt: skip
DECLARED = {name for name, _, _ in ARGUMENTS}
REMAPS = ("image", "camera_info", "odom", "pose", "sparse_points")


def _value(context, name):
    return LaunchConfiguration(name).perform(context)


def _unknown_arguments(context):
    """launch ignores undeclared `name:=value` silently; say so, with the closest declared name."""
    lines = []
    for name in sorted(set(context.launch_configurations) - DECLARED):
        close = difflib.get_close_matches(name, DECLARED, n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (or it belongs to an including launch file)"
        lines.append(LogInfo(msg=f"depth.launch.py: ignoring unknown argument {name!r}{hint}"))
    return lines


def _actions(context):
    share = get_package_share_directory("mde_ros")
    parameters = [_value(context, "params_file") or os.path.join(share, "config", "depth.yaml")]
    overrides = {name: _value(context, name) for name in ("model", "backend") if _value(context, name)}
    overrides["image_transport"] = _value(context, "image_transport")
    parameters.append(overrides)
    lifecycle = _value(context, "lifecycle").lower() in ("true", "1", "yes")
    namespace = _value(context, "namespace")
    actions = _unknown_arguments(context)
    actions.append(
        Node(
            package="mde_ros",
            executable="depth_lifecycle_node" if lifecycle else "depth_node",
            name="depth_node",
            namespace=namespace,
            parameters=parameters,
            remappings=[(name, _value(context, name)) for name in REMAPS],
            arguments=["--ros-args", "--log-level", _value(context, "log_level")],
            output="screen",
            emulate_tty=True,
        )
    )
    if _value(context, "rviz").lower() in ("true", "1", "yes"):
        rviz_args = ["-d", os.path.join(share, "config", "depth.rviz")]
        frame = _value(context, "fixed_frame")
        if frame:
            rviz_args += ["-f", frame]
        else:
            actions.append(LogInfo(msg="rviz: pass fixed_frame:=<frame_id of your images> to see the cloud"))
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                            arguments=rviz_args, output="screen"))  # fmt: skip
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]  # fmt: skip
    return LaunchDescription([*declared, OpaqueFunction(function=_actions)])
