"""`mde-ros eval`: AbsRel, SqRel, RMSE, log-RMSE, delta1/2/3 against ground-truth depth.

Relative (disparity) models are aligned by least-squares scale and shift in inverse-depth space
before scoring (MiDaS / Depth Anything protocol); metric models are scored as they are (or with
`--align median`). Prints a table (model and the constant / gradient priors) and writes
side-by-side PNGs: image | prediction | ground truth | AbsRel error.
"""

from __future__ import annotations

import argparse
import logging

from .options import add_backend

log = logging.getLogger(__name__)

EXAMPLES = """\
  mde-ros eval --model default --data visp:castel --out out/eval   # PNGs with metrics drawn in
  mde-ros eval --model model.onnx --data my_rgbd/ --depth-scale 0.001 --frames 0-49
  mde-ros eval --model default --data middlebury:motorcycle   # real wide-range scene, 2.2-4.8 m
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="registry name, .onnx file or `default`")
    parser.add_argument(
        "--data",
        required=True,
        help="folder with rgb/ and depth/ (see README), or visp:castel, visp:castle-simu, "
        "middlebury:motorcycle",
    )
    parser.add_argument(
        "--depth-scale", type=float, default=0.001, help="metres per unit of 16-bit depth PNGs"
    )
    parser.add_argument(
        "--ground-truth", choices=("depth", "disparity"), default="depth", help="what the depth/ files hold"
    )
    parser.add_argument(
        "--align",
        choices=("auto", "scale-shift", "median", "none"),
        default="auto",
        help="auto: scale+shift in inverse depth for relative models, none for metric",
    )
    add_backend(parser)
    parser.add_argument(
        "--input-size", type=int, default=0, help="network short side (0: the model's default)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N samples only")
    parser.add_argument("--frames", default="", help="sample indices to keep, e.g. 20-29 or 0,5,7")
    parser.add_argument("--out", default="", help="folder for side-by-side PNGs and metrics.json")
    parser.add_argument("--engine-dir", default="", help="cache folder (default: engines/ or ~/.cache)")


def parse_frames(text: str) -> list[int] | None:
    if not text:
        return None
    indices: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        indices += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return indices


def _aligned_depth(prediction, gt, mask, align: str, relative: bool):
    import numpy as np

    from ..training.metrics import prediction_to_depth

    if align == "scale-shift" or (align == "auto" and relative):
        return prediction_to_depth(prediction, gt, mask, relative=True)
    depth = np.asarray(prediction, np.float64)
    if align == "median":
        depth = depth * np.median(gt[mask]) / np.median(depth[mask])
    return depth


def _figure(sample, depth, mask, metrics, model: str, relative: bool, align: str):
    """The --out PNG: titled panels, colour bars (metres, or relative when unaligned), metrics."""
    from ..training.figures import eval_figure

    metric = not (relative and align == "none")
    how = {"auto": "scale+shift", "scale-shift": "scale+shift", "median": "median"}.get(align, "")
    title = f"prediction {model}" + (f" (aligned: {how})" if relative and metric and how else "")
    return eval_figure(sample.rgb, depth, sample.depth, mask, metrics, sample.name, title, metric)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    from ..training.metrics import METRIC_NAMES

    header = f"{'':<22}" + "".join(f"{name:>10}" for name in METRIC_NAMES)
    lines = [header]
    for label, metrics in rows.items():
        lines.append(f"{label:<22}" + "".join(f"{metrics[name]:>10.4f}" for name in METRIC_NAMES))
    return "\n".join(lines)


def evaluate_model(pipeline, samples, align: str, out_dir=None):
    """Per-sample and mean metrics of `pipeline` (and of the priors) on `samples`."""
    import cv2
    import numpy as np

    from ..models.spec import DISPARITY
    from ..pipeline import Frame
    from ..training.metrics import (
        baseline_predictions,
        depth_metrics,
        inverse_depth_fit,
        mean_metrics,
        prediction_to_depth,
    )

    relative = pipeline.spec.convention == DISPARITY
    per_model, per_prior = [], {name: [] for name in ("constant", "gradient")}
    from ..progress import track

    for sample in track(samples, "eval", unit="image"):
        result = pipeline.process(Frame(sample.rgb, sample.intrinsics))
        gt = sample.depth
        raw = result.prediction if relative else result.depth
        mask = np.isfinite(gt) & (gt > 0) & np.isfinite(raw)
        if not mask.any():
            continue
        depth = _aligned_depth(raw, gt, mask, align, relative)
        row = depth_metrics(depth, gt, mask)
        if relative:
            row["fit_scale"], row["fit_corr"] = inverse_depth_fit(raw, gt, mask)
        per_model.append({"name": sample.name, **row})
        for name, prior in baseline_predictions(*gt.shape).items():
            per_prior[name].append(depth_metrics(prediction_to_depth(prior, gt, mask, True), gt, mask))
        if out_dir is not None:
            figure = _figure(sample, depth, mask, per_model[-1], pipeline.spec.name, relative, align)
            cv2.imwrite(str(out_dir / f"{sample.name}.png"), figure)
    if not per_model:
        raise ValueError("no sample has valid ground truth")
    if relative:
        check_scale_sign(per_model)
    table = {"model": mean_metrics(per_model)}
    table.update({f"prior: {k}": mean_metrics(v) for k, v in per_prior.items()})
    return table, per_model


def inverted_samples(per_sample: list[dict]) -> list[str]:
    """Samples whose output fits inverse depth only with a negative scale (and clearly so)."""
    from ..training.metrics import INVERTED_CORRELATION

    return [
        r["name"] for r in per_sample if r.get("fit_scale", 1.0) < 0 and r["fit_corr"] <= INVERTED_CORRELATION
    ]


def check_scale_sign(per_sample: list[dict]) -> None:
    """Fail loudly when the model is inverted (negative fitted scale on at least half the samples)."""
    from ..errors import InvalidModelError

    inverted = inverted_samples(per_sample)
    if inverted and 2 * len(inverted) >= len(per_sample):
        raise InvalidModelError(
            f"the model is inverted: its output fits inverse depth only with a NEGATIVE scale on "
            f"{len(inverted)}/{len(per_sample)} samples (e.g. {', '.join(inverted[:3])}); it predicts "
            "depth-like values where disparity is expected, and no scale estimator of the node accepts "
            "s <= 0, so it never becomes metric. Retrain it (the training loss now refuses this)."
        )
    if inverted:
        log.warning("negative fitted scale (inverted output) on %s", ", ".join(inverted))


def scale_sign_line(per_sample: list[dict]) -> str:
    signed = [r for r in per_sample if "fit_scale" in r]
    if not signed:
        return "fitted scale sign: not applicable (metric model)"
    positive = sum(r["fit_scale"] > 0 for r in signed)
    inverted = len(inverted_samples(signed))
    return f"fitted scale sign: positive on {positive}/{len(signed)} samples (inverted: {inverted})"


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..inference.factory import create_backend
    from ..models.resolve import resolve_onnx
    from ..pipeline import DepthPipeline
    from ..training.datasets import load_dataset

    samples = load_dataset(args.data, args.depth_scale, args.ground_truth, args.limit)
    keep = parse_frames(args.frames)
    if keep is not None:
        samples = [s for i, s in enumerate(samples) if i in set(keep)]
    if args.ground_truth == "disparity":  # relative inverse depth: score against 1/disparity
        for s in samples:
            s.depth = np.where(s.depth > 0, 1.0 / s.depth, np.nan).astype(np.float32)
    onnx_path = resolve_onnx(args.model, args.engine_dir or None)
    backend = create_backend(args.backend, onnx_path, threads=args.threads)
    pipeline = DepthPipeline(backend, input_size=args.input_size or None)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        table, per_sample = evaluate_model(pipeline, samples, args.align, out_dir)
    finally:
        pipeline.close()
    print(f"{pipeline.spec.name} ({pipeline.spec.convention}) on {args.data}: {len(per_sample)} samples")
    print(format_table(table))
    print(scale_sign_line(per_sample))
    if out_dir:
        (out_dir / "metrics.json").write_text(json.dumps({"mean": table, "per_sample": per_sample}, indent=1))
        print(f"side-by-side images and metrics.json in {out_dir}")
    return 0
