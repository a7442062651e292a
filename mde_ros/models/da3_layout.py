"""Depth Anything 3 monocular variants: hyper-parameters and the official checkpoint key layout.

Learned from the upstream configs (ByteDance-Seed/Depth-Anything-3,
`src/depth_anything_3/configs/da3-small.yaml`, `da3-base.yaml`, `da3mono-large.yaml`,
`da3metric-large.yaml`) and the modules they name (`model/dinov2/vision_transformer.py`,
`model/dpt.py`, `model/dualdpt.py`, `model/cam_enc.py`, `model/cam_dec.py`). No torch here: the
registry reads this module, and `da3_state_shapes` lets tests check a torch model against the
official layout (every key and shape) without the real 0.1-1.4 GB files.

The published `model.safetensors` (Hugging Face `depth-anything/DA3-*`, written by the upstream
`DepthAnything3` wrapper) prefixes every key with `model.`.
"""

from __future__ import annotations

from dataclasses import dataclass

PATCH = 14
PRETRAIN_SIZE = 518  # DINOv2 position embeddings are for a 37 x 37 grid
CHECKPOINT_PREFIX = "model."

_VITS = {"vits": (384, 12, 6), "vitb": (768, 12, 12), "vitl": (1024, 24, 16)}  # dim, depth, heads


@dataclass(frozen=True)
class Da3Variant:
    name: str
    hub_name: str
    vit: str
    out_layers: tuple[int, int, int, int]
    alt_start: int  # -1: plain DINOv2; else camera token, alternating local/global attention
    head: str  # "dualdpt" (depth + ray heads) | "dpt" (depth [+ sky])
    features: int
    out_channels: tuple[int, int, int, int]
    metric: bool
    sky: bool
    licence: str
    description: str


DA3_VARIANTS = (
    Da3Variant(
        "da3-small", "DA3-SMALL", "vits", (5, 7, 9, 11), 4, "dualdpt", 64, (48, 96, 192, 384),
        False, False, "Apache-2.0", "Depth Anything 3 small (any-view model, one view), relative depth",
    ),
    Da3Variant(
        "da3-base", "DA3-BASE", "vitb", (5, 7, 9, 11), 4, "dualdpt", 128, (96, 192, 384, 768),
        False, False, "Apache-2.0", "Depth Anything 3 base (any-view model, one view), relative depth",
    ),
    Da3Variant(
        "da3mono-large", "DA3MONO-LARGE", "vitl", (4, 11, 17, 23), -1, "dpt", 256, (256, 512, 1024, 1024),
        False, True, "Apache-2.0", "Depth Anything 3 mono large, relative depth + sky",
    ),
    Da3Variant(
        "da3metric-large", "DA3METRIC-LARGE", "vitl", (4, 11, 17, 23), -1, "dpt", 256,
        (256, 512, 1024, 1024), True, True, "Apache-2.0",
        "Depth Anything 3 metric large, metres = output x focal / 300, + sky",
    ),
)  # fmt: skip


def da3_config(variant: Da3Variant) -> dict:
    """The ModelSpec `config` of a DA3 variant (JSON-serialisable, stored in the exported ONNX)."""
    dim, depth, heads = _VITS[variant.vit]
    any_view = variant.alt_start != -1
    return dict(
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        out_layers=list(variant.out_layers),
        # The any-view models start camera token, QK-norm, 2D RoPE and alternating attention at the
        # same block, and feed the head [local features ; global features] (`cat_token`).
        alt_start=variant.alt_start,
        qknorm_start=variant.alt_start,
        rope_start=variant.alt_start,
        cat_token=any_view,
        head=variant.head,
        head_dim_in=dim * 2 if any_view else dim,
        features=variant.features,
        out_channels=list(variant.out_channels),
        output_dim=2 if variant.head == "dualdpt" else 1,
        sky=variant.sky,
        camera_heads=any_view,  # cam_enc / cam_dec weights are in the file (unused for one view)
        cam_dim=dim,
        cam_heads=16,  # CameraEnc's default num_heads
    )


def da3_state_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the official checkpoint (without the `model.` prefix) and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    shapes.update(_backbone_shapes(config))
    shapes.update(_head_shapes(config))
    if config["camera_heads"]:
        shapes.update(_camera_shapes(config))
    return shapes


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    out = {f"{prefix}.weight": (n_out, n_in)}
    if bias:
        out[f"{prefix}.bias"] = (n_out,)
    return out


def _conv(prefix: str, n_in: int, n_out: int, k: int, bias: bool = True, transpose: bool = False):
    out = {f"{prefix}.weight": (n_in, n_out, k, k) if transpose else (n_out, n_in, k, k)}
    if bias:
        out[f"{prefix}.bias"] = (n_out,)
    return out


def _norm(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (dim,), f"{prefix}.bias": (dim,)}


def _block_shapes(prefix: str, dim: int, heads: int, qk_norm: bool) -> dict[str, tuple[int, ...]]:
    shapes = {**_norm(f"{prefix}.norm1", dim), **_linear(f"{prefix}.attn.qkv", dim, 3 * dim)}
    if qk_norm:
        shapes.update(_norm(f"{prefix}.attn.q_norm", dim // heads))
        shapes.update(_norm(f"{prefix}.attn.k_norm", dim // heads))
    shapes.update(_linear(f"{prefix}.attn.proj", dim, dim))
    shapes[f"{prefix}.ls1.gamma"] = (dim,)
    shapes.update(_norm(f"{prefix}.norm2", dim))
    shapes.update(_linear(f"{prefix}.mlp.fc1", dim, 4 * dim))
    shapes.update(_linear(f"{prefix}.mlp.fc2", 4 * dim, dim))
    shapes[f"{prefix}.ls2.gamma"] = (dim,)
    return shapes


def _backbone_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    dim, p = config["embed_dim"], "backbone.pretrained"
    grid = (PRETRAIN_SIZE // PATCH) ** 2
    shapes = {f"{p}.cls_token": (1, 1, dim)}
    if config["alt_start"] != -1:
        shapes[f"{p}.camera_token"] = (1, 2, dim)  # reference view, other views
    shapes[f"{p}.pos_embed"] = (1, grid + 1, dim)
    shapes.update(_conv(f"{p}.patch_embed.proj", 3, dim, PATCH))
    for i in range(config["depth"]):
        qk_norm = config["qknorm_start"] != -1 and i >= config["qknorm_start"]
        shapes.update(_block_shapes(f"{p}.blocks.{i}", dim, config["num_heads"], qk_norm))
    shapes.update(_norm(f"{p}.norm", dim))
    return shapes


def _fusion_shapes(prefix: str, features: int, residual: bool) -> dict[str, tuple[int, ...]]:
    shapes = {}
    units = ("resConfUnit1", "resConfUnit2") if residual else ("resConfUnit2",)
    for unit in units:
        for conv in ("conv1", "conv2"):
            shapes.update(_conv(f"{prefix}.{unit}.{conv}", features, features, 3))
    shapes.update(_conv(f"{prefix}.out_conv", features, features, 1))
    return shapes


def _head_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    dim_in, f, oc = config["head_dim_in"], config["features"], config["out_channels"]
    shapes: dict[str, tuple[int, ...]] = {}
    if config["head"] == "dualdpt":
        shapes.update(_norm("head.norm", dim_in))
    for i, channels in enumerate(oc):
        shapes.update(_conv(f"head.projects.{i}", dim_in, channels, 1))
    shapes.update(_conv("head.resize_layers.0", oc[0], oc[0], 4, transpose=True))
    shapes.update(_conv("head.resize_layers.1", oc[1], oc[1], 2, transpose=True))
    shapes.update(_conv("head.resize_layers.3", oc[3], oc[3], 3))
    for i, channels in enumerate(oc):
        shapes.update(_conv(f"head.scratch.layer{i + 1}_rn", channels, f, 3, bias=False))
    suffixes = ("", "_aux") if config["head"] == "dualdpt" else ("",)
    for suffix in suffixes:
        for k in range(1, 5):
            shapes.update(_fusion_shapes(f"head.scratch.refinenet{k}{suffix}", f, residual=k != 4))
    shapes.update(_conv("head.scratch.output_conv1", f, f // 2, 3))
    shapes.update(_conv("head.scratch.output_conv2.0", f // 2, 32, 3))
    shapes.update(_conv("head.scratch.output_conv2.2", 32, config["output_dim"], 1))
    if config["sky"]:
        shapes.update(_conv("head.scratch.sky_output_conv2.0", f // 2, 32, 3))
        shapes.update(_conv("head.scratch.sky_output_conv2.2", 32, 1, 1))
    if config["head"] == "dualdpt":
        for level in range(4):  # ray head: five 3x3 convs, then conv, LayerNorm, ReLU, 1x1 to 7
            widths = (f, f // 2, f, f // 2, f, f // 2)
            for j in range(5):
                shapes.update(
                    _conv(f"head.scratch.output_conv1_aux.{level}.{j}", widths[j], widths[j + 1], 3)
                )
            shapes.update(_conv(f"head.scratch.output_conv2_aux.{level}.0", f // 2, 32, 3))
            shapes.update(_norm(f"head.scratch.output_conv2_aux.{level}.2", 32))
            shapes.update(_conv(f"head.scratch.output_conv2_aux.{level}.5", 32, 7, 1))
    return shapes


def _camera_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """CameraEnc (pose -> token, 4 blocks, LayerScale) and CameraDec (token -> pose): loaded, unused."""
    dim, dec = config["cam_dim"], config["head_dim_in"]
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(4):
        shapes.update(_block_shapes(f"cam_enc.trunk.{i}", dim, config["cam_heads"], False))
    shapes.update(_norm("cam_enc.token_norm", dim))
    shapes.update(_norm("cam_enc.trunk_norm", dim))
    shapes.update(_linear("cam_enc.pose_branch.fc1", 9, dim // 2))
    shapes.update(_linear("cam_enc.pose_branch.fc2", dim // 2, dim))
    shapes.update(_linear("cam_dec.backbone.0", dec, dec))
    shapes.update(_linear("cam_dec.backbone.2", dec, dec))
    shapes.update(_linear("cam_dec.fc_t", dec, 3))
    shapes.update(_linear("cam_dec.fc_qvec", dec, 4))
    shapes.update(_linear("cam_dec.fc_fov.0", dec, 2))
    return shapes
