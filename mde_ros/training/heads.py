"""Heads trained on cached frozen-encoder features, sharing their weights with the full models.

`CachedDpt` / `CachedLlmMde` run the part of a full model after the encoder, on features cached by
`features.encode_frames`; their parameters *are* the full model's, so the trained state dict
(`trained_state`) loads straight into the exported model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Parameter-name prefixes that training changes (everything else comes from the installed packages).
TRAINED_PREFIXES = {
    "depth_anything": ("neck.", "head."),
    "llm_mde": ("reprogram.", "head."),
}


class CachedDpt(nn.Module):
    """Depth Anything V2 neck + head on cached DINOv2 layers (3, 6, 9, 12).

    With encoder LoRA (spec `encoder_lora`, blocks after layer 9 only), those blocks run in the
    loop on the cached layer-9 tokens of the whole grid (attention sees the whole image, as at
    inference); `box` (y, x, h, w in patches) then crops the tokens the head sees.
    """

    def __init__(self, model, tuned_from: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.tuned_from = tuned_from  # first encoder block run in the loop (None: all cached)

    @property
    def needs_whole_grid(self) -> bool:
        return self.tuned_from is not None

    def forward(
        self, features: torch.Tensor, size: tuple[int, int], prompt_ids=None, box=None
    ) -> torch.Tensor:
        inner = self.model
        patch = inner.config.patch_size
        if self.tuned_from is not None:
            features = self._run_tuned_blocks(features)
        if box is not None:
            features, size = crop_tokens(features, size, box, patch)
        height, width = size
        norm = inner.backbone.layernorm
        hidden = [norm(features[:, i]) for i in range(features.shape[1])]
        patch_h, patch_w = height // patch, width // patch
        fused = inner.neck(hidden, patch_h, patch_w)
        head = inner.head
        x = head.conv1(fused[head.head_in_index])
        x = F.interpolate(x, (patch_h * patch, patch_w * patch), mode="bilinear", align_corners=True)
        x = head.activation2(head.conv3(head.activation1(head.conv2(x)))) * head.max_depth
        return x[:, 0]

    def _run_tuned_blocks(self, features: torch.Tensor) -> torch.Tensor:
        """Layer 12 recomputed from the cached layer 9 through the (LoRA-adapted) blocks 9..11."""
        x = features[:, 2]
        for block in self.model.backbone.encoder.layer[self.tuned_from :]:
            x = block(x)
        return torch.cat([features[:, :3], x[:, None]], dim=1)


def crop_tokens(features: torch.Tensor, size: tuple[int, int], box, patch: int):
    """[B, L, 1 + h*w, C] tokens of a (h, w)-patch grid -> the class token + the `box` sub-grid."""
    y, x, ch, cw = box
    grid_h, grid_w = size[0] // patch, size[1] // patch
    b, layers, _, c = features.shape
    grid = features[:, :, 1:].reshape(b, layers, grid_h, grid_w, c)[:, :, y : y + ch, x : x + cw]
    cropped = torch.cat([features[:, :, :1], grid.reshape(b, layers, ch * cw, c)], dim=2)
    return cropped, (ch * patch, cw * patch)


class CachedLlmMde(nn.Module):
    """LLM-MDE after the ViT: reprogramming, LM, adaptation head, on cached layer-12 features."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, features: torch.Tensor, size: tuple[int, int], prompt_ids=None, box=None
    ) -> torch.Tensor:
        if box is not None:
            raise ValueError("CachedLlmMde takes cropped tokens, not a crop box")
        model = self.model
        vit = model._base(model.vit)
        tokens = vit.layernorm(features[:, -1])
        patch = model.patch_size
        depth = model.decode(tokens, prompt_ids, size[0] // patch, size[1] // patch)
        return F.interpolate(depth, size, mode="bilinear", align_corners=False)[:, 0]


def freeze_for_heads(model, architecture: str) -> list[str]:
    """Freeze everything but the heads (and LoRA adapters); returns the trainable parameter names."""
    prefixes = TRAINED_PREFIXES[architecture]
    names = []
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(prefixes) or "lora_" in name
        if param.requires_grad:
            names.append(name)
    return names


def trained_state(model, architecture: str) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics) of the trained parts, plus LoRA adapters."""
    prefixes = TRAINED_PREFIXES[architecture]
    return {
        k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefixes) or "lora_" in k
    }


def prepare_fresh_head(model, architecture: str) -> None:
    """Fresh DPT head with its final ReLU active: a random head can output 0 everywhere (no gradient)."""
    if architecture == "depth_anything":
        with torch.no_grad():
            model.head.conv3.bias.fill_(1.0)
