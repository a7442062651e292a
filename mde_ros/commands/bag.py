"""`mde-ros bag IN... -o OUT`: depth for whole recorded rosbag2 bags (MCAP or sqlite3), with the
node's pipeline and parameters; several bags fan out as Ray tasks (local or on a cluster)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  mde-ros bag drive.mcap_dir -o drive_depth                      # one bag, auto-detected topics
  mde-ros bag in_bag -o out_bag -p scale.mode:=sparse --copy all  # metric from recorded sparse points
  mde-ros bag bags/* -o out/ --workers 2                          # many bags: Ray tasks on this machine
  mde-ros bag /data/bags/* -o /data/out --ray-address auto --gpus-per-task 1  # on a Ray cluster
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from ..bags.writer import COMPRESSIONS, STORAGES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("inputs", nargs="+", metavar="IN", help="rosbag2 bag folder(s) (MCAP or sqlite3)")
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        help="output bag folder (one input) or folder of output bags (several)",
    )
    parser.add_argument("--model", help="model (node parameter `model`; default: the node's default)")
    parser.add_argument("--backend", help="auto | onnxruntime | tensorrt | torch (node parameter `backend`)")
    parser.add_argument(
        "--params-file",
        help="a depth_node params file (config/depth.yaml layout); default: the node's defaults",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="override a node parameter, e.g. -p scale.mode:=sparse (repeatable)",
    )
    parser.add_argument("--image-topic", help="Image or CompressedImage topic (default: the only one)")
    parser.add_argument(
        "--camera-info-topic", help="CameraInfo topic (default: beside the image, or the only one)"
    )
    parser.add_argument(
        "--pose-topic", help="odom/pose topic for scale.mode trajectory (default: the only one)"
    )
    parser.add_argument("--sparse-topic", help="PointCloud2 for scale.mode sparse (default: the only one)")
    parser.add_argument(
        "--copy",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="input topics to copy into the output ('all': every)",
    )
    parser.add_argument(
        "--points", action="store_true", help="also write depth/points (large: 16 B per pixel)"
    )
    parser.add_argument("--colorized", action="store_true", help="also write depth/colorized (bgr8)")
    parser.add_argument("--namespace", help="output namespace (default: the image topic's namespace)")
    parser.add_argument(
        "--storage", choices=STORAGES, default="mcap", help="output storage (default: %(default)s)"
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="output compression (default: %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    parser.add_argument(
        "--reorder-window",
        type=float,
        default=1.0,
        help="seconds of header-stamp disorder to re-order (default: %(default)s)",
    )
    ray = parser.add_argument_group("many bags (Ray)")
    ray.add_argument("--ray", action="store_true", help="use Ray even for one bag")
    ray.add_argument(
        "--ray-address",
        help="Ray cluster address ('auto': the cluster this job runs in); default: local ray.init()",
    )
    ray.add_argument(
        "--workers", type=int, default=1, help="local Ray only: bags processed at once (default: 1)"
    )
    ray.add_argument(
        "--cpus-per-task", type=float, default=1.0, help="CPUs each bag task declares (default: 1)"
    )
    ray.add_argument(
        "--gpus-per-task", type=float, default=0.0, help="GPUs each bag task declares (default: 0)"
    )
    ray.add_argument(
        "--retries",
        type=int,
        default=1,
        help="retries of a task after a worker crash or I/O error (default: 1)",
    )


def options_from(args: argparse.Namespace):
    """BagOptions from the command line (the node's parameters + flags)."""
    from ..bags.offline import BagOptions
    from ..bags.settings import node_parameters

    overrides = list(args.param)
    if args.model:
        overrides.append(f"model:={args.model}")
    if args.backend:
        overrides.append(f"backend:={args.backend}")
    return BagOptions(
        params=node_parameters(args.params_file, overrides),
        image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic,
        pose_topic=args.pose_topic,
        sparse_topic=args.sparse_topic,
        copy=tuple(args.copy),
        points=args.points,
        colorized=args.colorized,
        namespace=args.namespace,
        storage=args.storage,
        compression=args.compression,
        overwrite=args.overwrite,
        reorder_window=args.reorder_window,
    )


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    if len(args.inputs) > 1 or args.ray:
        return _run_many(args, options)
    from ..bags.offline import process_bag
    from ..bags.report import summary_lines

    summary = process_bag(args.inputs[0], args.output, options, progress=_progress_bar)
    print("\n".join(summary_lines(summary)))
    return 0 if summary.metric + summary.relative > 0 else 1


def _run_many(args: argparse.Namespace, options) -> int:
    from ..bags.fleet import FleetConfig, process_bags
    from ..bags.report import fleet_table

    config = FleetConfig(args.ray_address, args.workers, args.cpus_per_task, args.gpus_per_task, args.retries)
    rows = process_bags(args.inputs, args.output, options, config, progress=_bag_progress_bar)
    print(fleet_table(rows))
    return 0 if all(row.ok for row in rows) else 1


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="depth", dynamic_ncols=True)


def _bag_progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="bag", desc="bags", dynamic_ncols=True)
