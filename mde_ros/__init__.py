"""mde_ros: monocular depth estimation for ROS 2.

The core (pipeline, models, inference backends, geometry, scale) is free of ROS;
`mde_ros.ros` is the only package that imports rclpy.
"""

__version__ = "0.1.0"
