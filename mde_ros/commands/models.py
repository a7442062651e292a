"""`mde-ros models`: the registry, output conventions, checkpoint files and where to download them."""

from __future__ import annotations

import argparse

_CONVENTIONS = {
    "disparity": "affine-invariant inverse depth (relative; needs a scale source for metres)",
    "metric": "metres (sigmoid x max_depth)",
    "metric_canonical": "metres at a canonical focal length, scaled by fx / f_canonical",
}


EXAMPLES = """\
  mde-ros models
  mde-ros models --verbose-urls
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose-urls", action="store_true", help="also print the transformers (-hf) folders"
    )


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoints import hf_folder_repo
    from ..models.registry import REGISTRY
    from ..models.resolve import find_weights, weights_root

    print(f"weights folder: {weights_root()}/<name>/   (set MDE_ROS_WEIGHTS to change it)\n")
    print(f"{'name':42s} {'convention':17s} {'local':6s} checkpoint file")
    for name, spec in sorted(REGISTRY.items()):
        try:
            find_weights(spec)
            present = "yes"
        except Exception:
            present = "-"
        files = ", ".join(spec.checkpoint_files) or "(built in)"
        print(f"{name:42s} {spec.convention:17s} {present:6s} {files}")
        if spec.weights_url:
            print(f"{'':42s} download: {spec.weights_url}")
        if args.verbose_urls and hf_folder_repo(spec):
            print(f"{'':42s} or the transformers folder https://huggingface.co/{hf_folder_repo(spec)}")
    print("\nconventions:")
    for key, text in _CONVENTIONS.items():
        print(f"  {key:17s} {text}")
    print(
        "\n`model` accepts: a registry name (weights in the folder above), default, /path/file.onnx, "
        "/path/depth_anything_v2_vits.pth, NAME:/path/any.pth, or a transformers folder."
    )
    return 0
