"""Train the DPT or LLM-MDE head of a pretrained-encoder model on cached encoder features."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..models.encoder_lora import SPEC_KEY as ENCODER_LORA_KEY
from ..models.spec import ModelSpec
from .features import CACHED_LAYERS, FeatureSet
from .heads import CachedDpt, CachedLlmMde, crop_tokens, freeze_for_heads, trained_state
from .loop import TrainConfig, TrainResult, fit
from .losses import ssi_loss

log = logging.getLogger(__name__)


def prompts_for(spec: ModelSpec, data: FeatureSet) -> np.ndarray | None:
    """APG prompt ids per cached image (computed once: the prompt depends on the image only)."""
    if not spec.needs_prompt:
        return None
    from ..models.prompts import prompt_fn_for

    fn = prompt_fn_for(spec)
    return np.concatenate([fn(rgb) for rgb in data.rgb])


def cached_wrapper(model, spec: ModelSpec):
    if spec.architecture == "llm_mde":
        return CachedLlmMde(model)
    lora = spec.config.get(ENCODER_LORA_KEY)
    if not lora:
        return CachedDpt(model)
    first = min(lora["layers"])
    if first < CACHED_LAYERS[2]:  # blocks before it would need tokens that are not cached
        raise ValueError(f"encoder LoRA on cached features: blocks from {CACHED_LAYERS[2]} on, not {first}")
    return CachedDpt(model, CACHED_LAYERS[2])


def _crop(data: FeatureSet, idx, crop: tuple[int, int] | None, rng: np.random.Generator | None):
    """Features [B, layers, 1+h*w, C], depth and size of a random `crop` (patches) of the grid, or
    all of it, and the crop's box (y, x, h, w in patches; None for the whole grid)."""
    patch = 14
    grid_h, grid_w = data.size[0] // patch, data.size[1] // patch
    feats = data.features[idx]
    if crop is None or (crop[0] >= grid_h and crop[1] >= grid_w) or rng is None:
        return feats, data.depth[idx], data.size, None
    ch, cw = min(crop[0], grid_h), min(crop[1], grid_w)
    y, x = int(rng.integers(grid_h - ch + 1)), int(rng.integers(grid_w - cw + 1))
    depth = data.depth[idx][:, y * patch : (y + ch) * patch, x * patch : (x + cw) * patch]
    return feats, depth, data.size, (y, x, ch, cw)


def _batch(data: FeatureSet, prompts, idx, crop=None, rng=None, whole_grid: bool = False):
    """Tensors of one batch. The crop is applied here to the cached tokens, or (`whole_grid`, the
    wrapper runs encoder blocks first) returned as a box for the wrapper to apply."""
    feats, depth, size, box = _crop(data, idx, crop, rng)
    feats = torch.from_numpy(np.ascontiguousarray(feats))
    if box is not None and not whole_grid:  # crop the cached (fp16) tokens before widening them
        feats, size = crop_tokens(feats, size, box, 14)
        box = None
    feats = feats.float()
    depth = torch.from_numpy(np.ascontiguousarray(depth))
    mask = torch.isfinite(depth) & (depth > 0)
    depth = torch.where(mask, depth, torch.ones_like(depth))
    ids = torch.from_numpy(prompts[idx]) if prompts is not None else None
    return feats, depth, mask, ids, size, box


def predict_cached(wrapper, data: FeatureSet, prompts, batch_size: int = 8) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(len(data), start + batch_size))
            feats, _, _, ids, size, _ = _batch(data, prompts, idx)
            out.append(wrapper(feats, size, ids).numpy())
    return np.concatenate(out)


def _as_list(data) -> list[FeatureSet]:
    return list(data) if isinstance(data, (list, tuple)) else [data]


def _locate(sets: list[FeatureSet], idx: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Global sample indices over concatenated `sets` -> [(set number, local indices)]."""
    offsets = np.cumsum([0] + [len(s) for s in sets])
    which = np.searchsorted(offsets, idx, side="right") - 1
    return [(int(k), idx[which == k] - offsets[k]) for k in np.unique(which)]


def train_head(
    model,
    spec: ModelSpec,
    train: FeatureSet | list[FeatureSet],
    val: FeatureSet | list[FeatureSet],
    config: TrainConfig,
    checkpoint: Path | None = None,
    grad_weight: float = 0.5,
    crop: tuple[int, int] | list | None = None,
) -> TrainResult:
    """Fit the heads (and LoRA adapters, if any) of `model` on cached features; best state loaded back.

    `train` / `val` may be lists of feature sets of different network sizes (multi-resolution
    training: a step's images are grouped by set); `crop` is one crop for all training sets or a
    list, one per set (None: the whole grid).
    """
    wrapper = cached_wrapper(model, spec)
    names = freeze_for_heads(model, spec.architecture)
    log.info(
        "training %d tensors (%.2f M parameters)",
        len(names),
        sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
    )
    train_sets, val_sets = _as_list(train), _as_list(val)
    crops = list(crop) if isinstance(crop, list) else [crop] * len(train_sets)
    if len(crops) != len(train_sets):
        raise ValueError(f"{len(crops)} crops for {len(train_sets)} training sets")
    train_prompts = [prompts_for(spec, s) for s in train_sets]
    val_prompts = [prompts_for(spec, s) for s in val_sets]

    rng = np.random.default_rng(config.seed + 1)
    n_train = sum(len(s) for s in train_sets)
    whole_grid = getattr(wrapper, "needs_whole_grid", False)

    def step_loss(module, idx):
        total = 0.0
        for k, local in _locate(train_sets, np.asarray(idx)):
            feats, depth, mask, ids, size, box = _batch(
                train_sets[k], train_prompts[k], local, crops[k], rng, whole_grid
            )
            total = total + ssi_loss(wrapper(feats, size, ids, box), depth, mask, grad_weight) * len(local)
        return total / len(idx)

    def val_loss(module):
        losses, count = 0.0, 0
        for data, prompts in zip(val_sets, val_prompts):
            for start in range(0, len(data), 8):
                idx = np.arange(start, min(len(data), start + 8))
                feats, depth, mask, ids, size, _ = _batch(data, prompts, idx)
                losses += float(ssi_loss(wrapper(feats, size, ids), depth, mask, 0.0)) * len(idx)
                count += len(idx)
        return losses / count

    return _fit_and_keep(wrapper, step_loss, n_train, val_loss, config, model, spec, checkpoint)


def train_end_to_end(
    model,
    spec: ModelSpec,
    train_frames: list,
    val_frames: list,
    config: TrainConfig,
    short_side: int,
    checkpoint: Path | None = None,
    grad_weight: float = 0.5,
) -> TrainResult:
    """LLM-MDE with the ViT in the loop (LoRA on ViT and LM, heads): ~10x slower per image than
    cached features on a CPU, for few-shot runs of a handful of frames."""
    from ..processing import Preprocessor
    from .features import resize_depth

    if spec.architecture != "llm_mde":
        raise ValueError("end-to-end (ViT LoRA) training is for LLM-MDE; DPT heads train on cached features")
    pre = Preprocessor(spec, short_side)

    def tensors(frames):
        pixels = np.concatenate([pre(f.rgb).copy() for f in frames])
        depth = np.stack([resize_depth(f.depth, *pixels.shape[2:]) for f in frames])
        from ..models.prompts import prompt_fn_for

        ids = np.concatenate([prompt_fn_for(spec)(f.rgb) for f in frames])
        return torch.from_numpy(pixels), torch.from_numpy(depth), torch.from_numpy(ids)

    train, val = tensors(train_frames), tensors(val_frames)
    freeze_for_heads(model, spec.architecture)

    def loss_of(data, idx, weight):
        pixels, depth, ids = (t[idx] for t in data)
        mask = torch.isfinite(depth) & (depth > 0)
        return ssi_loss(model(pixels, ids), torch.where(mask, depth, torch.ones_like(depth)), mask, weight)

    def val_loss(module):
        return float(loss_of(val, np.arange(len(val_frames)), 0.0))

    def step_loss(module, idx):
        return loss_of(train, idx, grad_weight)

    return _fit_and_keep(model, step_loss, len(train_frames), val_loss, config, model, spec, checkpoint)


def _fit_and_keep(
    module, step_loss, count: int, val_loss, config: TrainConfig, model, spec: ModelSpec, checkpoint
) -> TrainResult:
    """Train `module`, then load the best trained state into `model` and switch it to eval."""
    result = fit(
        module,
        step_loss,
        count,
        val_loss,
        config,
        lambda: trained_state(model, spec.architecture),
        checkpoint,
    )
    model.load_state_dict(result.state, strict=False)
    model.eval()
    return result
