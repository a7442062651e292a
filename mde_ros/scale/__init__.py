"""Metric scale recovery (ROS-free). See `base.py` for the interface the pipeline uses."""

from .base import FixedScale, ScaleEstimator, ScaleState

__all__ = ["FixedScale", "ScaleEstimator", "ScaleState"]
