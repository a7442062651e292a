"""Depth losses: scale-and-shift-invariant (relative, MiDaS) and scale-invariant log (metric, Eigen).

All take a prediction [B,H,W], ground-truth depth [B,H,W] in metres and a validity mask [B,H,W].
"""

from __future__ import annotations

import torch


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    filled = torch.where(mask, x, torch.full_like(x, float("nan")))
    return torch.nanmedian(filled.flatten(1), dim=1).values


def normalise_disparity(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ground-truth inverse depth shifted to median 0 and scaled to mean absolute deviation 1."""
    disparity = torch.where(mask, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    median = _masked_median(disparity, mask)[:, None, None]
    centred = (disparity - median) * mask
    mad = centred.abs().flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    return centred / mad.clamp_min(1e-6)[:, None, None]


def _centred_moments(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Masked means and (co)variances of prediction and target, per image, shaped [B, 1, 1]."""
    m = mask.to(pred.dtype)
    n = m.flatten(1).sum(1).clamp_min(1)[:, None, None]
    mean_p = (m * pred).flatten(1).sum(1)[:, None, None] / n
    mean_t = (m * target).flatten(1).sum(1)[:, None, None] / n
    centred_p, centred_t = (pred - mean_p) * m, (target - mean_t) * m
    var_p = (centred_p * centred_p).flatten(1).sum(1)[:, None, None]
    var_t = (centred_t * centred_t).flatten(1).sum(1)[:, None, None]
    cov = (centred_p * centred_t).flatten(1).sum(1)[:, None, None]
    return mean_p, mean_t, var_p, var_t, cov


def align_least_squares(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image s >= 0 and t minimising sum_mask (s*pred + t - target)^2 (differentiable).

    The scale is constrained to be non-negative: an output that fits the target only upside down
    (depth-like instead of disparity-like) is aligned to the constant mean_t, i.e. it is scored as
    carrying no signal at all. Solved in centred form: the textbook 2x2 determinant cancels
    catastrophically in float32 when the prediction is nearly constant (e.g. at initialisation).
    """
    mean_p, mean_t, var_p, _, cov = _centred_moments(pred, target, mask)
    scale = cov.clamp_min(0.0) / var_p.clamp_min(1e-12)
    return scale * (pred - mean_p) + mean_t


def inversion_penalty(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over images of max(0, -corr(pred, target)): the gradient out of an inverted output.

    With s clamped at 0 the aligned residual no longer depends on the prediction, so this term is
    what turns an inverted head around (and makes it score worse than a constant).
    """
    _, _, var_p, var_t, cov = _centred_moments(pred, target, mask)
    corr = cov / (var_p * var_t).clamp_min(1e-24).sqrt()
    return torch.relu(-corr).mean()


def gradient_loss(residual: torch.Tensor, mask: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching (MiDaS): penalise gradients of the aligned residual."""
    total = residual.new_zeros(())
    for level in range(scales):
        step = 2**level
        r, m = residual[:, ::step, ::step], mask[:, ::step, ::step].to(residual.dtype)
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * m[:, :, 1:] * m[:, :, :-1]
        gy = (r[:, 1:] - r[:, :-1]).abs() * m[:, 1:] * m[:, :-1]
        total = total + (gx.sum() + gy.sum()) / m.sum().clamp_min(1)
    return total / scales


def ssi_loss(pred_disparity: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, grad_weight: float = 0.5):
    """Scale-and-shift-invariant L1 in normalised inverse-depth space (+ gradient matching).

    The scale is constrained positive (`align_least_squares`) and an inverted output is pushed
    back by `inversion_penalty`: a head can never learn depth where disparity is meant.
    """
    target = normalise_disparity(depth, mask)
    aligned = align_least_squares(pred_disparity, target, mask)
    residual = (aligned - target) * mask
    loss = residual.abs().flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    loss = loss.mean() + inversion_penalty(pred_disparity, target, mask)
    if grad_weight > 0:
        loss = loss + grad_weight * gradient_loss(residual, mask)
    return loss


def si_log_loss(pred_depth: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, lam: float = 0.85):
    """Eigen et al. scale-invariant log loss, for metric models (prediction in metres)."""
    diff = (torch.log(pred_depth.clamp_min(1e-6)) - torch.log(depth.clamp_min(1e-6))) * mask
    n = mask.flatten(1).sum(1).clamp_min(1)
    mean = diff.flatten(1).sum(1) / n
    mean_sq = (diff * diff).flatten(1).sum(1) / n
    return torch.sqrt((mean_sq - lam * mean * mean).clamp_min(1e-8)).mean()


LOSSES = {"ssi": ssi_loss, "si": si_log_loss}
