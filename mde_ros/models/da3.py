"""Depth Anything 3 for one image, in torch, written for the ONNX contract (dynamic height/width).

Own implementation of the monocular path of the upstream network (ByteDance-Seed/Depth-Anything-3,
`model/dinov2/vision_transformer.py`, `model/dpt.py`, `model/dualdpt.py`); module names follow the
official checkpoint so that its `model.safetensors` loads strictly. Hyper-parameters and the key
layout live in `da3_layout.py`.

Single view, so the any-view models' "global" attention runs over the same tokens as "local"
attention; they differ only by the RoPE positions (global blocks see every patch at position 1).
Everything that depends on the input size (position-embedding resize, RoPE angles, the DualDPT UV
embedding) is computed with tensor ops from the input's shape, so the exported graph follows the
input instead of freezing the example size.

Outputs (ONNX contract `predicted_depth`, [B, H, W]):
  * relative variants: 1 / depth (zero-shift disparity); sky pixels 0;
  * metric variant: the network's canonical-focal depth (metres = value x focal / 300); sky +Inf.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .da3_layout import CHECKPOINT_PREFIX, PATCH, PRETRAIN_SIZE
from .spec import ModelSpec

SKY_THRESHOLD = 0.3  # upstream utils/alignment.py compute_sky_mask: sky where prediction >= 0.3
ROPE_FREQUENCY = 100.0
POS_OFFSET = 0.1  # DINOv2's interpolate_offset: the resize uses scale (n + 0.1) / 37
CUBIC_A = -0.75  # PyTorch's bicubic kernel


# ---------------------------------------------------------------------------------------------
# Size-dependent pieces, as tensor ops


def _size(x: torch.Tensor, dim: int) -> torch.Tensor:
    """A tensor dimension as a float32 0-d tensor that stays symbolic in the exported graph."""
    return torch._shape_as_tensor(x)[dim].to(torch.float32)


def _cubic_matrix(n_out: torch.Tensor, n_in: int, native: torch.Tensor) -> torch.Tensor:
    """[n_out, n_in] weights of PyTorch's bicubic resize (align_corners=False) at scale (n_out + 0.1) / n_in.

    The same result as `F.interpolate(..., scale_factor=s, mode="bicubic")`, but as a matrix built
    from the output size, so it is exported with a dynamic size. Where `native` (the 37 x 37 patch
    grid of a 518 x 518 input) it is the identity: upstream then uses the table unchanged.
    """
    out_index = torch.arange(n_out.to(torch.int64), dtype=torch.float32)
    inverse_scale = n_in / (n_out + POS_OFFSET)
    source = (out_index + 0.5) * inverse_scale - 0.5
    base = torch.floor(source)
    t = source - base
    a = CUBIC_A
    weights = (
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
    )
    columns = torch.arange(n_in, dtype=torch.float32)
    matrix = torch.zeros_like(source)[:, None] * columns[None, :]
    for k, weight in enumerate(weights):
        index = torch.clamp(base + (k - 1), 0, n_in - 1)
        matrix = matrix + (index[:, None] == columns[None, :]).to(torch.float32) * weight[:, None]
    identity = (out_index[:, None] == columns[None, :]).to(torch.float32)
    return torch.where(native, identity, matrix)


def _rope_tables(positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [N, dim] for 1D RoPE over `dim` features at integer `positions` [N] (frequency 100)."""
    inv_freq = 1.0 / (ROPE_FREQUENCY ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _uv_embedding(x: torch.Tensor, image_w: torch.Tensor, image_h: torch.Tensor) -> torch.Tensor:
    """The DualDPT's sinusoidal UV embedding of a feature map x [B, C, h, w] (x 0.1), [1, C, h, w]."""
    channels = x.shape[1]
    h, w = _size(x, 2), _size(x, 3)
    aspect = image_w / image_h
    diagonal = torch.sqrt(aspect * aspect + 1.0)
    u = _centred_coords(w, aspect / diagonal)
    v = _centred_coords(h, 1.0 / diagonal)
    grid_u = u[None, :].expand(v.shape[0], -1).reshape(-1)
    grid_v = v[:, None].expand(-1, u.shape[0]).reshape(-1)
    embedding = torch.cat((_sincos(grid_u, channels // 2), _sincos(grid_v, channels // 2)), dim=-1)
    embedding = embedding.reshape(v.shape[0], u.shape[0], channels).permute(2, 0, 1)
    return embedding[None] * 0.1


def _centred_coords(n: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """n points evenly from -span (n-1)/n to +span (n-1)/n (upstream create_uv_grid)."""
    edge = span * (n - 1) / n
    index = torch.arange(n.to(torch.int64), dtype=torch.float32)
    step = 2 * edge / torch.clamp(n - 1, min=1.0)
    return -edge + index * step


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float32) / (dim / 2.0)
    omega = 1.0 / 100.0**omega
    angles = positions[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


# ---------------------------------------------------------------------------------------------
# Transformer


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if qk_norm:
            self.q_norm = nn.LayerNorm(dim // heads)
            self.k_norm = nn.LayerNorm(dim // heads)
        self.qk_norm = qk_norm
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = _apply_rope(q, rope), _apply_rope(k, rope)
        attention = torch.softmax((q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1), dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


def _apply_rope(x: torch.Tensor, rope: tuple) -> torch.Tensor:
    """2D RoPE: the first half of each head's features rotates with y, the second half with x."""
    (cos_y, sin_y), (cos_x, sin_x) = rope
    half = x.shape[-1] // 2
    y_part, x_part = x[..., :half], x[..., half:]
    y_part = y_part * cos_y + _rotate_half(y_part) * sin_y
    x_part = x_part * cos_x + _rotate_half(x_part) * sin_x
    return torch.cat((y_part, x_part), dim=-1)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINOv2 ViT/14 with DA3's any-view additions (camera token, QK-norm, RoPE, local+global)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        dim, self.alt_start = config["embed_dim"], config["alt_start"]
        self.rope_start, self.cat_token = config["rope_start"], config["cat_token"]
        self.out_layers = list(config["out_layers"])
        grid = PRETRAIN_SIZE // PATCH
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if self.alt_start != -1:
            self.camera_token = nn.Parameter(torch.zeros(1, 2, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.patch_embed = PatchEmbed(dim)
        qk_start = config["qknorm_start"]
        self.blocks = nn.ModuleList(
            Block(dim, config["num_heads"], qk_norm=qk_start != -1 and i >= qk_start)
            for i in range(config["depth"])
        )
        self.norm = nn.LayerNorm(dim)  # upstream builds it without DINOv2's eps=1e-6

    def position_embedding(self, patch_h: torch.Tensor, patch_w: torch.Tensor) -> torch.Tensor:
        grid = PRETRAIN_SIZE // PATCH
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[0, 1:]
        table = patch_pos.reshape(grid, grid, -1).permute(2, 0, 1)  # [C, 37, 37]
        native = (patch_h == grid) & (patch_w == grid)
        rows, cols = _cubic_matrix(patch_h, grid, native), _cubic_matrix(patch_w, grid, native)
        resized = rows @ table @ cols.transpose(0, 1)
        return torch.cat((cls_pos, resized.flatten(1).transpose(0, 1)[None]), dim=1)

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        patch_h, patch_w = torch.floor(_size(pixels, 2) / PATCH), torch.floor(_size(pixels, 3) / PATCH)
        x = self.patch_embed(pixels)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.position_embedding(patch_h, patch_w)
        local_rope, global_rope = self._rope(patch_h, patch_w, x.shape[-1] // self.blocks[0].attn.heads)
        outputs, local_x = [], x
        for i, block in enumerate(self.blocks):
            if i == self.alt_start:  # the reference view's camera token replaces the cls token
                x = torch.cat((self.camera_token[:, :1].expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
            is_global = self.alt_start != -1 and i >= self.alt_start and i % 2 == 1
            use_rope = self.rope_start != -1 and i >= self.rope_start
            x = block(x, (global_rope if is_global else local_rope) if use_rope else None)
            if not is_global:
                local_x = x
            if i in self.out_layers:
                outputs.append((local_x, x))
        return [self._output(local, final) for local, final in outputs]

    def _output(self, local: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
        out = torch.cat((local, self.norm(final)), dim=-1) if self.cat_token else self.norm(final)
        return out[:, 1:]  # patch tokens only

    def _rope(self, patch_h: torch.Tensor, patch_w: torch.Tensor, head_dim: int):
        """RoPE tables for local blocks (patch (y, x) + 1, special token 0) and global blocks (all 1)."""
        if self.rope_start == -1:
            return None, None
        rows = torch.arange(patch_h.to(torch.int64))
        cols = torch.arange(patch_w.to(torch.int64))
        y = (rows[:, None] + cols[None, :] * 0).reshape(-1) + 1
        x = (rows[:, None] * 0 + cols[None, :]).reshape(-1) + 1
        zero = torch.zeros(1, dtype=y.dtype)
        y, x = torch.cat((zero, y)), torch.cat((zero, x))
        ones = torch.cat((zero, torch.ones_like(y[1:])))
        half = head_dim // 2
        local = (_rope_tables(y, half), _rope_tables(x, half))
        same = _rope_tables(ones, half)
        return local, (same, same)


# ---------------------------------------------------------------------------------------------
# DPT heads


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    def __init__(self, features: int, residual: bool = True) -> None:
        super().__init__()
        if residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if lateral is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = size if size is not None else (x.shape[2] * 2, x.shape[3] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _head_block(features: int, out: int, layer_norm: bool = False) -> nn.Sequential:
    """3x3 conv (features/2 -> 32), [LayerNorm over channels], ReLU, 1x1 conv to `out`."""
    layers: list[nn.Module] = [nn.Conv2d(features // 2, 32, 3, 1, 1)]
    if layer_norm:
        layers += [ChannelsLast(), nn.LayerNorm(32), ChannelsFirst()]
    layers += [nn.ReLU(), nn.Conv2d(32, out, 1)]
    return nn.Sequential(*layers)


class ChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class Scratch(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        f, dual = config["features"], config["head"] == "dualdpt"
        for i, channels in enumerate(config["out_channels"]):
            setattr(self, f"layer{i + 1}_rn", nn.Conv2d(channels, f, 3, 1, 1, bias=False))
        for suffix in ("", "_aux") if dual else ("",):
            for k in range(1, 5):
                setattr(self, f"refinenet{k}{suffix}", FusionBlock(f, residual=k != 4))
        self.output_conv1 = nn.Conv2d(f, f // 2, 3, 1, 1)
        self.output_conv2 = _head_block(f, config["output_dim"])
        if config["sky"]:
            self.sky_output_conv2 = _head_block(f, 1)
        if dual:  # the ray head: loaded from the checkpoint, not run for one view
            self.output_conv1_aux = nn.ModuleList(_aux_convs(f) for _ in range(4))
            self.output_conv2_aux = nn.ModuleList(_head_block(f, 7, layer_norm=True) for _ in range(4))


def _aux_convs(f: int) -> nn.Sequential:
    widths = (f, f // 2, f, f // 2, f, f // 2)
    return nn.Sequential(*(nn.Conv2d(widths[j], widths[j + 1], 3, 1, 1) for j in range(5)))


class DepthHead(nn.Module):
    """DPT (mono/metric: depth + sky) or DualDPT (any-view: depth + confidence; ray head unused)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        dim_in, oc = config["head_dim_in"], config["out_channels"]
        self.dual = config["head"] == "dualdpt"
        self.sky = config["sky"]
        if self.dual:
            self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], 4, 4),
                nn.ConvTranspose2d(oc[1], oc[1], 2, 2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], 3, 2, 1),
            ]
        )
        self.scratch = Scratch(config)

    def forward(self, features: list[torch.Tensor], pixels: torch.Tensor):
        """(depth [B, H, W], sky probability [B, H, W] or None) at the input resolution."""
        image_h, image_w = _size(pixels, 2), _size(pixels, 3)
        patch_h, patch_w = pixels.shape[2] // PATCH, pixels.shape[3] // PATCH
        levels = []
        for i, tokens in enumerate(features):
            if self.dual:
                tokens = self.norm(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], patch_h, patch_w)
            x = self.projects[i](x)
            if self.dual:
                x = x + _uv_embedding(x, image_w, image_h)
            levels.append(self.resize_layers[i](x))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i + 1}_rn")(x) for i, x in enumerate(levels))
        out = s.refinenet4(l4, size=l3.shape[2:])
        out = s.refinenet3(out, l3, size=l2.shape[2:])
        out = s.refinenet2(out, l2, size=l1.shape[2:])
        out = s.output_conv1(s.refinenet1(out, l1))
        out = F.interpolate(out, size=(patch_h * PATCH, patch_w * PATCH), mode="bilinear", align_corners=True)
        if self.dual:
            out = out + _uv_embedding(out, image_w, image_h)
        depth = torch.exp(s.output_conv2(out)[:, 0])  # channel 1 of the DualDPT is the confidence
        sky = torch.relu(s.sky_output_conv2(out)[:, 0]) if self.sky else None
        return depth, sky


class CameraEncoder(nn.Module):
    """Upstream CameraEnc (pose -> camera token): in the file, unused for one uncalibrated view."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        dim = config["cam_dim"]
        self.trunk = nn.Sequential(*(Block(dim, config["cam_heads"], eps=1e-5) for _ in range(4)))
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.pose_branch = Mlp(9, dim // 2, dim)


class CameraDecoder(nn.Module):
    """Upstream CameraDec (token -> pose): in the file, unused for depth."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        dim = config["head_dim_in"]
        self.backbone = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_qvec = nn.Linear(dim, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim, 2), nn.ReLU())


class Backbone(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.pretrained = VisionTransformer(config)


class DepthAnything3(nn.Module):
    """The official DA3 module tree (keys without the `model.` prefix) with a one-image forward."""

    onnx_forward = True  # torch_models.depth_module: `forward` already computes the contract

    def __init__(self, config: dict, metric: bool) -> None:
        super().__init__()
        self.backbone = Backbone(config)
        self.head = DepthHead(config)
        if config["camera_heads"]:
            self.cam_enc = CameraEncoder(config)
            self.cam_dec = CameraDecoder(config)
        self.metric = metric

    def depth_and_sky(self, pixels: torch.Tensor):
        """The network's own outputs: (depth [B, H, W], sky [B, H, W] or None), no post-processing."""
        return self.head(self.backbone.pretrained(pixels), pixels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The ONNX contract: `predicted_depth` [B, H, W] (see the module docstring)."""
        depth, sky = self.depth_and_sky(pixel_values)
        out = depth if self.metric else 1.0 / depth
        if sky is not None:
            marker = torch.full_like(out, math.inf if self.metric else 0.0)
            out = torch.where(sky >= SKY_THRESHOLD, marker, out)
        return out


def build_da3(spec: ModelSpec, seed: int | None = None) -> DepthAnything3:
    """A DA3 model of `spec`'s layout with random weights (transformer: normal 0.02; convs: torch's)."""
    if seed is not None:
        torch.manual_seed(seed)
    model = DepthAnything3(spec.config, metric=spec.is_metric)
    if seed is not None:
        for param in model.backbone.parameters():
            if param.dim() > 1:  # tokens, position table, linear weights; the patch conv included
                nn.init.normal_(param, std=0.02)
    return model.eval()


def official_state_dict(model: DepthAnything3) -> dict[str, torch.Tensor]:
    """The model's tensors under the official checkpoint's names (`model.` prefix)."""
    return {CHECKPOINT_PREFIX + k: v for k, v in model.state_dict().items()}


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official DA3 state dict with the `model.` prefix removed (files without it pass through)."""
    return {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state.items()}
