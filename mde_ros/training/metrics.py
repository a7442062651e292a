"""Depth metrics (numpy): AbsRel, SqRel, RMSE, log-RMSE, delta1/2/3, with the MiDaS / Depth Anything
alignment for relative models (least-squares scale and shift in inverse-depth space)."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "log_rmse", "d1", "d2", "d3")


def align_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares s, t with s*pred + t ~ target over `mask`."""
    p, t = pred[mask].astype(np.float64), target[mask].astype(np.float64)
    a = np.stack([p, np.ones_like(p)], 1)
    (scale, shift), *_ = np.linalg.lstsq(a, t, rcond=None)
    return float(scale), float(shift)


INVERTED_CORRELATION = -0.1  # below this, a negative fitted scale is a real (inverted) signal, not noise


def inverse_depth_fit(prediction: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Unconstrained least-squares scale of a relative prediction to 1/gt, and their correlation.

    A negative scale means the output is depth-like where disparity is expected (an inverted
    model); no node estimator accepts s <= 0, so such a model never becomes metric.
    """
    p = prediction[mask].astype(np.float64)
    g = 1.0 / gt_depth[mask].astype(np.float64)
    p, g = p - p.mean(), g - g.mean()
    cov, var_p, var_g = float(p @ g), float(p @ p), float(g @ g)
    scale = cov / var_p if var_p > 0 else 0.0
    corr = cov / np.sqrt(var_p * var_g) if var_p > 0 and var_g > 0 else 0.0
    return scale, float(corr)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Standard metrics between predicted and ground-truth depth (metres) on `mask`."""
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    if p.size == 0:
        raise ValueError("no valid ground-truth pixels to score")
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "log_rmse": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
    }


def prediction_to_depth(
    prediction: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray, relative: bool
) -> np.ndarray:
    """Depth (metres) to score: relative (disparity) predictions are aligned to 1/gt by scale+shift.

    The aligned disparity is clamped to 1/(10 x the largest ground-truth depth) so that a pixel
    aligned to zero or below becomes "very far" rather than an infinite or negative depth.
    """
    if not relative:
        return np.asarray(prediction, np.float64)
    target = 1.0 / gt_depth
    scale, shift = align_scale_shift(prediction, np.where(mask, target, 0), mask)
    aligned = scale * prediction.astype(np.float64) + shift
    floor = 1.0 / (10.0 * float(np.max(gt_depth[mask])))
    return 1.0 / np.maximum(aligned, floor)


def score(prediction: np.ndarray, gt_depth: np.ndarray, relative: bool, mask: np.ndarray | None = None):
    """Metrics of one prediction against ground-truth depth (NaN / <= 0 = invalid)."""
    valid = np.isfinite(gt_depth) & (gt_depth > 0) & np.isfinite(prediction)
    if mask is not None:
        valid &= mask
    depth = prediction_to_depth(prediction, gt_depth, valid, relative)
    return depth_metrics(depth, gt_depth, valid)


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in METRIC_NAMES}


def baseline_predictions(height: int, width: int) -> dict[str, np.ndarray]:
    """Priors a model must beat: a constant disparity and a top-to-bottom gradient (near at the bottom)."""
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None].repeat(width, 1)
    return {"constant": np.ones((height, width), np.float32), "gradient": ramp + 1e-3}
