"""Training loop: AdamW, cosine schedule with warm-up, early stopping, seeds, tqdm, safetensors."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    patience: int = 4  # epochs without validation improvement before stopping
    seed: int = 0
    progress: bool = True
    max_minutes: float = 0.0  # 0: no time limit
    adapter_lr: float = 0.0  # learning rate of LoRA adapters (`lora_` parameters); 0: `lr`


@dataclass
class TrainResult:
    best_val: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lambda(total_steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def fit(
    model: torch.nn.Module,
    step_loss: Callable[[torch.nn.Module, np.ndarray], torch.Tensor],
    n_train: int,
    val_loss: Callable[[torch.nn.Module], float],
    config: TrainConfig,
    state_fn: Callable[[], dict[str, torch.Tensor]],
    checkpoint: Path | None = None,
) -> TrainResult:
    """Minimise `step_loss(model, batch_indices)`; keep the state with the best `val_loss(model)`."""
    from tqdm import tqdm

    seed_everything(config.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("nothing to train: no parameter requires a gradient")
    params = [p for _, p in named]
    adapters = [p for n, p in named if "lora_" in n]
    groups = [{"params": [p for n, p in named if "lora_" not in n]}]
    if adapters:  # zero-initialised LoRA ups start slowly at a head's learning rate
        groups.append({"params": adapters, "lr": config.adapter_lr or config.lr})
    optimiser = torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, n_train // config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, cosine_lambda(total, config.warmup_steps))
    rng = np.random.default_rng(config.seed)
    result = TrainResult(best_val=float("inf"), best_epoch=-1, state=state_fn())
    start, stale = time.monotonic(), 0
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(n_train)
        losses = []
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress
        )
        for step in bar:
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = step_loss(model, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        model.eval()
        with torch.no_grad():
            val = float(val_loss(model))
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val}
        result.history.append(entry)
        log.info("epoch %d: train %.4f val %.4f", epoch + 1, entry["train_loss"], val)
        if val < result.best_val:
            result.best_val, result.best_epoch, stale = val, epoch + 1, 0
            result.state = state_fn()
            if checkpoint is not None:
                save_state(result.state, checkpoint)
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop: no validation improvement for %d epochs", stale)
                break
        if config.max_minutes and (time.monotonic() - start) / 60 > config.max_minutes:
            log.info("time limit reached after epoch %d", epoch + 1)
            break
    return result


def save_state(state: dict[str, torch.Tensor], path: Path, half: bool = False, metadata: dict | None = None):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        out[k] = v.half() if half and v.is_floating_point() else v
    save_file(out, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    path.chmod(0o644)  # safetensors writes 0600; weights are meant to be shared
