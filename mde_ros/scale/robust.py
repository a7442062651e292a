"""Robust fits of the network output to metric depths.

Relative models: 1/z = s d + t, fitted in inverse-depth space (RANSAC on pairs, then Huber IRLS on
the inliers). Residuals are relative, (s d + t) z - 1, i.e. the relative depth error to first
order, so near and far points count alike. The fit's level is then set where the user judges the
scale (`level_to_points`): the median ratio of published to metric depth over the points is 1.
Metric models: one depth factor k, z = k * pred, fitted on log(z / pred).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_FIT_POINTS = 6
MAX_INLIER_BAND = 0.25  # relative depth error beyond which a point is an outlier, however poor the model
# Points within this factor of the fit set its level: a network's own error rarely reaches a factor
# of 2 (its δ1 counts 1.25), a sensor's gross outliers (a wrong return, a bad match) usually do.
LEVEL_FACTOR = 2.0
DENSITY_GRIDS = tuple(range(3, 13))  # cells per side of the grids the point density is counted on
CROWD_FACTOR = 2.0  # a grid cell with more points than this x the median occupied cell's is capped


@dataclass
class FitResult:
    scale: float
    shift: float
    inliers: np.ndarray  # bool mask over the input points
    log_std: float  # standard deviation of log(scale) from the fit itself
    residual: float  # robust std of the relative residuals of the inliers
    candidates: int  # usable (finite, positive) points the inliers were drawn from
    covariance: np.ndarray | None = None  # of (s, t), with s in units of 1 / d

    def level_std(self, anchor: float) -> float:
        """Std of log(s d + t) at d = anchor: how precisely the fit gives the depth there.

        Small where the points are, growing away from them (s and t trade off there).
        """
        if self.covariance is None:
            return self.log_std
        jac = np.array([anchor, 1.0])
        level = self.scale * anchor + self.shift
        return float(np.sqrt(max(jac @ self.covariance @ jac, 0.0)) / level) if level > 0 else float("inf")

    def relevel(self, factor: float) -> None:
        """Divide s and t by `factor` (the depth grows by it); relative precisions are unchanged."""
        self.scale /= factor
        self.shift /= factor
        if self.covariance is not None:
            self.covariance = self.covariance / factor**2

    @property
    def inlier_ratio(self) -> float:
        return float(self.inliers.sum()) / self.candidates if self.candidates else 0.0

    @property
    def count(self) -> int:
        return int(self.inliers.sum())


def _clean(d: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(d, np.float64).reshape(-1)
    z = np.asarray(z, np.float64).reshape(-1)
    valid = np.isfinite(d) & np.isfinite(z) & (z > 0)
    return d, z, valid


def weighted_affine_fit(d: np.ndarray, z: np.ndarray, weights: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least squares of (s d + t) z = 1 with per-point weights; returns s, t and cov(s, t) / sigma²."""
    a = np.stack([d * z, z], axis=1) * np.sqrt(weights)[:, None]
    b = np.sqrt(weights)
    normal = a.T @ a
    if np.linalg.cond(normal) > 1e12:
        return float("nan"), float("nan"), np.full((2, 2), np.inf)
    cov = np.linalg.inv(normal)
    s, t = cov @ (a.T @ b)
    return float(s), float(t), cov


def _relative_residuals(d: np.ndarray, z: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (np.multiply.outer(s, d) + np.asarray(t)[..., None]) * z - 1.0


def huber_affine_fit(
    d: np.ndarray, z: np.ndarray, s: float, t: float, delta: float = 0.02, iterations: int = 8
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """IRLS with Huber weights on relative residuals, started from (s, t)."""
    weights = np.ones_like(d)
    cov = np.full((2, 2), np.inf)
    for _ in range(iterations):
        residual = np.abs((s * d + t) * z - 1.0)
        weights = np.where(residual <= delta, 1.0, delta / np.maximum(residual, 1e-12))
        s_new, t_new, cov = weighted_affine_fit(d, z, weights)
        if not np.isfinite(s_new):
            break
        converged = abs(s_new - s) <= 1e-7 * abs(s) + 1e-12 and abs(t_new - t) <= 1e-7 * abs(s) + 1e-12
        s, t = s_new, t_new
        if converged:
            break
    return s, t, weights, cov


def _inlier_band(residual: np.ndarray, threshold: float) -> float:
    """Inlier band of the final fit: `threshold`, widened to 3 robust sigmas of all residuals.

    A real network's relative depth is not exactly affine in inverse depth: its residuals spread
    wider than a sensor's noise. Fitting only the tight subset inside `threshold` then locks the
    scale onto whichever surface the network got best in this frame, and that choice changes from
    frame to frame (jitter); the widened band fits the scene as a whole. Gross outliers (a factor
    off) stay outside: the band is capped at MAX_INLIER_BAND.
    """
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    return min(max(threshold, 3.0 * sigma), MAX_INLIER_BAND)


def ransac_affine(
    d: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    threshold: float = 0.08,
    iterations: int = 256,
) -> FitResult | None:
    """Robust (s, t) with 1/z = s d + t; None when there are too few usable points or no s > 0."""
    d, z, valid = _clean(d, z)
    index = np.flatnonzero(valid)
    if index.size < MIN_FIT_POINTS:
        return None
    # Work on d / median|d|: raw outputs can be ~1e-7 (or 1e3) and the normal equations must not care.
    unit = float(np.median(np.abs(d[index])))
    if not unit > 0:
        return None
    dv, zv = d[index] / unit, z[index]
    pairs = rng.integers(0, index.size, size=(iterations, 2))
    d0, d1 = dv[pairs[:, 0]], dv[pairs[:, 1]]
    y0, y1 = 1.0 / zv[pairs[:, 0]], 1.0 / zv[pairs[:, 1]]
    spread = d1 - d0
    usable = np.abs(spread) > 1e-9 * (np.abs(d0) + np.abs(d1) + 1e-12)
    s = np.where(usable, (y1 - y0) / np.where(usable, spread, 1.0), np.nan)
    t = y0 - s * d0
    good = np.isfinite(s) & (s > 0)
    if not good.any():
        return None
    s, t = s[good], t[good]
    counts = (np.abs(_relative_residuals(dv, zv, s, t)) < threshold).sum(axis=1)
    best = int(np.argmax(counts))
    inside = np.abs((s[best] * dv + t[best]) * zv - 1.0) < threshold
    if inside.sum() < MIN_FIT_POINTS:
        return None
    start = float(s[best]), float(t[best])
    s_fit, t_fit, _, _ = huber_affine_fit(dv[inside], zv[inside], *start, threshold / 4)
    if not (np.isfinite(s_fit) and s_fit > 0):
        return None
    band = _inlier_band((s_fit * dv + t_fit) * zv - 1.0, threshold)
    inside = np.abs((s_fit * dv + t_fit) * zv - 1.0) < band
    if inside.sum() < MIN_FIT_POINTS:
        return None
    s_fit, t_fit, _, cov = huber_affine_fit(dv[inside], zv[inside], s_fit, t_fit, band / 4)
    residual = (s_fit * dv[inside] + t_fit) * zv[inside] - 1.0
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual)))) + 1e-6
    log_std = float(np.sqrt(max(cov[0, 0], 0.0)) * sigma / s_fit) if s_fit > 0 else float("inf")
    scaling = np.diag([1.0 / unit, 1.0])  # back to the units of d
    covariance = scaling @ cov @ scaling * sigma**2
    inliers = np.zeros(d.shape, bool)
    inliers[index[inside]] = True
    return FitResult(s_fit / unit, t_fit, inliers, log_std, sigma, int(index.size), covariance)


def level_to_points(
    d: np.ndarray, z: np.ndarray, scale: float, shift: float, weights: np.ndarray | None = None
) -> float:
    """Factor k by which (s, t) is divided so that the weighted median of published / metric depth
    over the points within LEVEL_FACTOR of the fit is 1 (1.0 when no point qualifies).

    The robust fit's inliers are not the scene: the inlier band drops the tail of the network's
    error, and that tail is one-sided (a real network is off by 20-40 % on some surfaces, mostly
    in one direction), so the inliers' level is biased (on castel the published depth came out
    ~1 % too near on every frame). The median over all points but the gross outliers is the
    published depth's scale as the user reads it: median(depth / truth).
    """
    d = np.asarray(d, np.float64).reshape(-1)
    z = np.asarray(z, np.float64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = np.log((scale * d + shift) * z)  # log(z / published depth)
    keep = np.isfinite(log_ratio) & (np.abs(log_ratio) < math.log(LEVEL_FACTOR))
    if keep.sum() < MIN_FIT_POINTS:
        return 1.0
    w = np.ones(int(keep.sum())) if weights is None else np.asarray(weights, np.float64).reshape(-1)[keep]
    return math.exp(weighted_median(log_ratio[keep], w))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def density_weights(u: np.ndarray, v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-point weight that caps what a crowded part of the image counts: on each grid of 3x3 ...
    12x12 cells (one grid's cell borders would decide too much), the points of a cell holding more
    than CROWD_FACTOR x the median occupied cell's count share that many points' weight.

    For points that cluster where the image is textured (ORB features): without it, 70 % of the
    points on one surface where the network happens to be off set the scale of the whole image.
    Only crowds are capped: lifting sparse cells to the weight of full ones (an area weighting)
    lets a few single triangulations decide, and on Castle-simu it doubled the scale error.
    """
    u = np.asarray(u, np.int64).reshape(-1)
    v = np.asarray(v, np.int64).reshape(-1)
    weights = np.zeros(u.size)
    if not u.size:
        return weights
    for cells in DENSITY_GRIDS:
        label = (v * cells // shape[0]) * cells + u * cells // shape[1]
        _, index, count = np.unique(label, return_inverse=True, return_counts=True)
        crowd = CROWD_FACTOR * float(np.median(count))
        weights += np.minimum(1.0, crowd / count[index])
    return weights / len(DENSITY_GRIDS)


def robust_scale(prediction: np.ndarray, z: np.ndarray, threshold: float = 0.08) -> FitResult | None:
    """Metric models: depth factor k with z = k * prediction, from the inliers of log(z / prediction)."""
    pred, z, valid = _clean(prediction, z)
    valid &= pred > 0
    if valid.sum() < MIN_FIT_POINTS:
        return None
    ratio = np.full(z.shape, np.nan)
    ratio[valid] = np.log(z[valid] / pred[valid])
    centre = float(np.median(ratio[valid]))
    spread = 1.4826 * float(np.median(np.abs(ratio[valid] - centre)))
    inliers = valid & (np.abs(ratio - centre) < max(3.0 * spread, threshold))
    if inliers.sum() < MIN_FIT_POINTS:
        return None
    log_k = float(np.mean(ratio[inliers]))
    sigma = float(np.std(ratio[inliers])) + 1e-6
    log_std = sigma / np.sqrt(inliers.sum())
    return FitResult(float(np.exp(log_k)), 0.0, inliers, log_std, sigma, int(valid.sum()))


def fit_depths(
    prediction: np.ndarray, z: np.ndarray, relative: bool, rng: np.random.Generator, threshold: float = 0.08
) -> FitResult | None:
    """The fit each mode uses: (s, t) in inverse depth for relative models, k for metric ones."""
    if relative:
        return ransac_affine(prediction, z, rng, threshold)
    return robust_scale(prediction, z, threshold)
