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


def align_least_squares(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image scale s and shift t minimising sum_mask (s*pred + t - target)^2 (differentiable).

    Solved in centred form: the textbook 2x2 determinant cancels catastrophically in float32 when
    the prediction is nearly constant (e.g. at initialisation).
    """
    m = mask.to(pred.dtype)
    n = m.flatten(1).sum(1).clamp_min(1)[:, None, None]
    mean_p = (m * pred).flatten(1).sum(1)[:, None, None] / n
    mean_t = (m * target).flatten(1).sum(1)[:, None, None] / n
    centred = (pred - mean_p) * m
    var = (centred * centred).flatten(1).sum(1)[:, None, None]
    cov = (centred * (target - mean_t)).flatten(1).sum(1)[:, None, None]
    scale = cov / var.clamp_min(1e-12)
    return scale * (pred - mean_p) + mean_t


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
    """Scale-and-shift-invariant L1 in normalised inverse-depth space (+ gradient matching)."""
    target = normalise_disparity(depth, mask)
    aligned = align_least_squares(pred_disparity, target, mask)
    residual = (aligned - target) * mask
    loss = residual.abs().flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    loss = loss.mean()
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
