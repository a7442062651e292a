"""`mde-ros eval-scale`: metric scale recovery on sequences with ground truth.

Without `--model`, the relative output is simulated from the ground-truth depth by an unknown
affine map in inverse depth plus noise (`mde_ros.scale.evaluate`), so the figures measure the scale
estimators, not a network. With `--model` (e.g. `default`), the actual network runs on every frame
and each row is printed next to the same estimator on perfect (simulated) relative depth and the
per-frame oracle alignment (s, t fitted to each frame's full ground truth). The fits use only
points on pixels with ground truth (where the depth is scored and the oracle fitted); trajectory
mode adds a `net, all px` row with every triangulated feature, as in the node.
Sequences: castel (real SR300, sparse mode), castle-simu (rendered with poses: sparse and
trajectory modes), ground (synthetic floor from known geometry: intrinsics mode; simulated only).

Columns: `scale err` = median |s/s_true - 1| (simulated only); `depth err` = median over frames of
|median(depth/GT) - 1|, the error of the published depth's scale; `log err` = median over frames of
|mean log(depth/GT)|, the same read as the scale term of the scale-invariant log error (it weighs
the network's tails, where the median does not); `jitter` = std over all metric
frames of log median(depth/GT), the scale wobble a user sees; `to metric` = frames until metric;
`temporal` (sequences with poses) = temporal alignment error: the previous published depth warped
into the current frame with the ground-truth pose against the current one, mean |dz|/z on
co-visible pixels (`mde_ros.scale.temporal`); the ground truth's own score (the warp's resampling
error) is printed below the table.
"""

from __future__ import annotations

import argparse

SEQUENCES = {"castel": ("sparse",), "castle-simu": ("sparse", "trajectory"), "ground": ("intrinsics",)}
MODES = ("sparse", "trajectory", "intrinsics")
NETWORK_SEQUENCES = ("castel", "castle-simu")  # real images (the ground scene is a black frame)
# Trajectory rows fit only the features on pixels with ground truth (`run_sequence`); this row
# also uses those on surfaces the ground truth lacks, as the node would.
ALL_FEATURES = "net, all px"


EXAMPLES = """\
  mde-ros eval-scale                                  # every sequence and scale mode
  mde-ros eval-scale --mode sparse --noise 0.05 --outliers 0.2
  mde-ros eval-scale --model default --sequence castle-simu   # the real network next to the oracle
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequence", choices=[*SEQUENCES, "all"], default="all", help="sequence to run")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all", help="scale mode")
    parser.add_argument("--frames", type=int, default=0, help="frames per sequence (0 = all)")
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise of the simulated output")
    parser.add_argument("--outliers", type=float, default=0.1, help="fraction of gross sparse outliers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated output and sparse points")
    parser.add_argument(
        "--model",
        default="",
        help="run this network (registry name, .onnx or `default`) instead of simulating its output",
    )
    parser.add_argument(
        "--input-size", type=int, default=0, help="network short side (0: the model's default)"
    )
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: ONNX Runtime's)")
    parser.add_argument(
        "--stabilise",
        type=float,
        default=0.0,
        help="with --model: also print the network rows through the odometry depth stabiliser with this "
        "blend weight (0..1; sequences with poses); 0: off",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import scale_config
    from ..scale.evaluate import GroundFrame, ground_scene, oracle_sequence, run_sequence
    from ..scale.factory import create_estimator
    from ..scale.stabiliser import DepthStabiliser

    rows = []
    for sequence, modes in SEQUENCES.items():
        if args.sequence not in ("all", sequence) or (args.model and sequence not in NETWORK_SEQUENCES):
            continue
        modes = [m for m in modes if args.mode in ("all", m)]
        if not modes:
            continue
        frames = _frames(sequence, args.frames, ground_scene, GroundFrame)
        predictions = _predictions(args, frames) if args.model else None
        for mode in modes:
            config = {"mode": mode, "camera_height": 1.2, "camera_pitch": 10.0}
            sources = [("simulated", None)] + ([("network", predictions)] if args.model else [])
            if args.model and mode == "trajectory":
                sources.append((ALL_FEATURES, predictions))
            if args.model and args.stabilise > 0 and frames[0].pose_cam_obj is not None:
                sources.append(("stabilised", predictions))
            for source, outputs in sources:
                # the same sparse points / noise for every source and with or without --model
                rng = np.random.default_rng([args.seed, list(SEQUENCES).index(sequence), MODES.index(mode)])
                estimator = create_estimator(scale_config(config))
                stabiliser = DepthStabiliser(args.stabilise) if source == "stabilised" else None
                result = run_sequence(
                    estimator,
                    frames,
                    rng,
                    args.noise,
                    outliers=args.outliers,
                    predictions=outputs,
                    stabiliser=stabiliser,
                    fit_scored_pixels=source != ALL_FEATURES,
                )
                rows.append((sequence, mode, source, result.summary()))
        if args.model:
            rows.append((sequence, "-", "oracle", oracle_sequence(frames, predictions).summary()))
    print(format_rows(rows))
    return 0


def format_rows(rows: list) -> str:
    lines = [
        f"{'sequence':12} {'mode':11} {'output':11} {'frames':>6} {'to metric':>9} {'scale err':>9} "
        f"{'depth err':>9} {'log err':>7} {'AbsRel':>7} {'delta1':>7} {'jitter':>7} {'temporal':>8}"
    ]
    for sequence, mode, source, s in rows:
        scale_err = f"{s['scale_error']:9.2%}" if source == "simulated" else f"{'-':>9}"
        temporal = (
            f"{s['temporal_error']:8.4f}" if s["temporal_error"] == s["temporal_error"] else f"{'-':>8}"
        )
        lines.append(
            f"{sequence:12} {mode:11} {source:11} {s['frames']:6d} {s['frames_to_metric']:9} {scale_err} "
            f"{s['depth_scale_error']:9.2%} {s['log_scale_error']:7.2%} {s['abs_rel']:7.4f} "
            f"{s['delta1']:7.3f} {s['depth_jitter']:7.2%} {temporal}"
        )
    floors = {seq: s["temporal_floor"] for seq, _, _, s in rows if s["temporal_floor"] == s["temporal_floor"]}
    lines += [
        f"temporal error of the ground truth itself on {seq}: {floor:.4f}" for seq, floor in floors.items()
    ]
    return "\n".join(lines)


def _predictions(args: argparse.Namespace, frames: list) -> list:
    """The network's disparity for every frame, at image resolution."""
    from ..inference.factory import create_backend
    from ..models.resolve import resolve_onnx
    from ..pipeline import DepthPipeline, Frame

    backend = create_backend("onnxruntime", resolve_onnx(args.model), threads=args.threads)
    pipeline = DepthPipeline(backend, input_size=args.input_size or None)
    try:
        if pipeline.spec.convention != "disparity":
            from ..errors import InvalidInputError

            raise InvalidInputError(f"{args.model} is a metric model: eval-scale needs a relative one")
        return [pipeline.process(Frame(f.rgb, f.intrinsics)).prediction for f in frames]
    finally:
        pipeline.close()


def _frames(sequence: str, count: int, ground_scene, ground_frame) -> list:
    if sequence == "ground":
        return [ground_scene()] * (count or 60)  # a static stretch: jitter is the filter's doing
    from ..data import visp

    frames = visp.castel_frames() if sequence == "castel" else visp.castle_simu_frames()
    return frames[:count] if count else frames
