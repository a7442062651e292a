"""`mde-ros eval-scale`: metric scale recovery on sequences with ground truth.

The relative output is simulated from the ground-truth depth by an unknown affine map in inverse
depth plus noise (`mde_ros.scale.evaluate`), so the figures measure the scale estimators, not a
network. Sequences: castel (real SR300, sparse mode), castle-simu (rendered with poses: sparse and
trajectory modes), ground (synthetic floor from known geometry: intrinsics mode).
"""

from __future__ import annotations

import argparse

SEQUENCES = {"castel": ("sparse",), "castle-simu": ("sparse", "trajectory"), "ground": ("intrinsics",)}


EXAMPLES = """\
  mde-ros eval-scale                                  # every sequence and scale mode
  mde-ros eval-scale --mode sparse --noise 0.05 --outliers 0.2
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequence", choices=[*SEQUENCES, "all"], default="all", help="recorded sequence")
    parser.add_argument(
        "--mode", choices=["sparse", "trajectory", "intrinsics", "all"], default="all", help="scale source"
    )
    parser.add_argument("--frames", type=int, default=0, help="frames per sequence (0 = all)")
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise of the simulated output")
    parser.add_argument("--outliers", type=float, default=0.1, help="fraction of gross sparse outliers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated noise")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import scale_config
    from ..scale.evaluate import GroundFrame, ground_scene, run_sequence
    from ..scale.factory import create_estimator

    rng = np.random.default_rng(args.seed)
    rows = []
    for sequence, modes in SEQUENCES.items():
        if args.sequence not in ("all", sequence):
            continue
        modes = [m for m in modes if args.mode in ("all", m)]
        if not modes:
            continue
        frames = _frames(sequence, args.frames, ground_scene, GroundFrame)
        for mode in modes:
            config = {"mode": mode, "camera_height": 1.2, "camera_pitch": 10.0}
            result = run_sequence(
                create_estimator(scale_config(config)), frames, rng, args.noise, outliers=args.outliers
            )
            rows.append((sequence, mode, result.summary()))
    print(f"{'sequence':12} {'mode':11} {'frames':>6} {'metric':>6} {'scale err':>9} {'final':>7} "
          f"{'AbsRel':>7} {'delta1':>7} {'jitter':>7}")  # fmt: skip
    for sequence, mode, s in rows:
        print(
            f"{sequence:12} {mode:11} {s['frames']:6d} {s['metric_frames']:6d} {s['scale_error']:9.2%} "
            f"{s['final_scale_error']:7.2%} {s['abs_rel']:7.4f} {s['delta1']:7.3f} {s['jitter']:7.2%}"
        )
    return 0


def _frames(sequence: str, count: int, ground_scene, ground_frame) -> list:
    if sequence == "ground":
        return [ground_scene()] * (count or 60)  # a static stretch: jitter is the filter's doing
    from ..data import visp

    frames = visp.castel_frames() if sequence == "castel" else visp.castle_simu_frames()
    return frames[:count] if count else frames
