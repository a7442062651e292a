"""Recorded data: rosbag2 bags read and written with `rosbags` (no rclpy), the offline depth run
(`mde-ros bag`) and its Ray fan-out over many bags."""
