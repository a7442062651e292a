"""`mde-ros models`: every registry name with its output convention, licence and download command."""

from __future__ import annotations

import argparse

_CONVENTIONS = {
    "disparity": "affine-invariant inverse depth (relative; needs a scale source for metres)",
    "metric": "metres (sigmoid x max_depth)",
    "metric_canonical": "metres at a canonical focal length, scaled by f_network / f_canonical",
}


EXAMPLES = """\
  mde-ros models
  mde-ros models --verbose-urls
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose-urls",
        action="store_true",
        help="also print the file URLs and the transformers (-hf) folders",
    )


def run(args: argparse.Namespace) -> int:
    from ..models.registry import ENTRIES, names
    from ..models.resolve import find_weights, weights_root

    print(f"weights folder: {weights_root()}/<name>/   (set MDE_ROS_WEIGHTS to change it)\n")
    print(f"{'name':38s} {'convention':17s} {'licence':14s} {'local':6s} get the weights")
    for name in names():
        entry = ENTRIES[name]
        try:
            if not entry.shipped:
                find_weights(entry.spec)
            present = "yes"
        except Exception:
            present = "-"
        if entry.shipped or (not entry.files and entry.spec.architecture != "llm_mde"):
            how = "(shipped with mde_ros)"
        elif entry.files:
            how = f"mde-ros download {name}"
        else:
            how = "(architecture only: no published weights)"
        licence = entry.licence.split(" ")[0]
        print(f"{name:38s} {entry.spec.convention:17s} {licence:14s} {present:6s} {how}")
        if args.verbose_urls:
            for remote in entry.files:
                print(f"{'':38s} {remote.url}")
            if entry.hf_folder_repo:
                print(f"{'':38s} or the transformers folder https://huggingface.co/{entry.hf_folder_repo}")
    print("\nconventions:")
    for key, text in _CONVENTIONS.items():
        print(f"  {key:17s} {text}")
    print(
        "\n`model` accepts: a registry name above (weights in the folder above), /path/file.onnx, "
        "/path/depth_anything_v2_vits.pth, NAME:/path/any.pth or .safetensors, or a transformers folder."
    )
    return 0
