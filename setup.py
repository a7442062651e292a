"""ament_python package that also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mde_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/*", "data/**/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
    ],
    install_requires=["numpy", "pyyaml"],
    zip_safe=True,
    maintainer="mde_ros maintainers",
    description="Monocular depth estimation ROS 2 node (Depth Anything, LLM-MDE).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "depth_node = mde_ros.ros.depth_node:main",
            "depth_lifecycle_node = mde_ros.ros.lifecycle_node:main",
            "mde-ros = mde_ros.cli:main",
        ],
    },
)
