"""Options shared by several `mde-ros` commands: one default and one help text each."""

from __future__ import annotations

import argparse


def add_backend(parser: argparse.ArgumentParser) -> None:
    """--backend, with the node's default (`auto`) and the factory's choices."""
    from ..inference.factory import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="inference backend; auto: TensorRT on an NVIDIA GPU, else ONNX Runtime (as the node)",
    )
