"""Many bags at once: one Ray task per bag (`mde-ros bag IN... -o DIR`), on this machine or a cluster.

Ray does the scheduling, resource accounting (CPUs / GPUs declared per task), retries and the
distribution over machines; this module only maps bags to tasks and collects one row per bag.
`ray` is imported here only, so the node and single-bag runs never need it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .offline import BagOptions, BagSummary, process_bag
from .writer import BagError

# Retried after a worker crash (Ray's max_retries) and for these exceptions: transient I/O on
# network file systems, memory pressure. A bad bag (BagError) fails at once: it would fail again.
RETRIED_EXCEPTIONS = (OSError, MemoryError)


@dataclass
class FleetConfig:
    address: str | None = None  # None: $RAY_ADDRESS, else a local instance; "auto", "ray://host:10001"
    workers: int = 1  # local only: bags at once (the local instance gets workers x cpus_per_task CPUs)
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    retries: int = 1


@dataclass
class BagRow:
    input: str
    output: str
    summary: BagSummary | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.summary is not None


def output_paths(inputs: list[str], out_dir: str | Path) -> list[Path]:
    """One output bag per input, named like the input bag, under `out_dir`."""
    names = [Path(str(i).rstrip("/")).name for i in inputs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BagError(f"several input bags are named {', '.join(duplicated)}; their outputs would collide")
    return [Path(out_dir) / name for name in names]


def process_one(input_path: str, output_path: str, options: BagOptions, cpus: float) -> BagSummary:
    """The body of one Ray task (module level, so Ray pickles it by reference)."""
    # The task's declared CPUs; ONNX Runtime would otherwise start one thread per core of the machine.
    threads = options.params["threads"] or max(1, int(cpus))
    options = BagOptions(**{**options.__dict__, "params": {**options.params, "threads": threads}})
    return process_bag(input_path, output_path, options)


def process_bags(
    inputs: list[str],
    out_dir: str | Path,
    options: BagOptions,
    config: FleetConfig,
    progress: Callable[[int], Any] | None = None,
) -> list[BagRow]:
    """Run every bag as a Ray task and return one row per bag, in input order.

    `progress(total_bags)` may return a progress bar (`update(n)`, a context manager), advanced as
    bags finish in any order."""
    try:
        import ray
    except ImportError as exc:
        raise BagError("several bags run as Ray tasks: install Ray (pip install ray==2.60.0)") from exc

    # Absolute paths: a task may run in another working directory (or on another machine that
    # mounts the same shared file system).
    given = [str(i) for i in inputs]
    inputs = [str(Path(i).resolve()) for i in inputs]
    outputs = output_paths(inputs, Path(out_dir).resolve())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    if started_here:
        arguments = _init_arguments(config)
        try:
            ray.init(**arguments)
        except ConnectionError as exc:
            raise BagError(
                f"cannot reach the Ray cluster at {arguments['address']} ({exc}); on a cluster node or in a "
                "Ray job use --ray-address auto; an explicit address with Ray's token authentication "
                "also needs RAY_AUTH_MODE=token"
            ) from exc
    try:
        task = ray.remote(process_one).options(
            num_cpus=config.cpus_per_task,
            num_gpus=config.gpus_per_task,
            max_retries=config.retries,
            retry_exceptions=list(RETRIED_EXCEPTIONS),
        )
        cpus = config.cpus_per_task
        refs = [task.remote(str(i), str(o), options, cpus) for i, o in zip(inputs, outputs, strict=True)]
        return _collect(ray, refs, given, outputs, progress)
    finally:
        if started_here:
            ray.shutdown()


def _init_arguments(config: FleetConfig) -> dict[str, Any]:
    import os

    arguments: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    address = config.address or os.environ.get("RAY_ADDRESS")  # set inside a submitted Ray job
    if address:
        arguments["address"] = address
        return arguments
    # A local instance sized to `workers` tasks; workers import this very package (also from a
    # source checkout that is not installed).
    import mde_ros

    package_root = str(Path(mde_ros.__file__).resolve().parents[1])
    arguments["address"] = "local"  # a new instance, even if another one runs on this machine
    arguments["num_cpus"] = max(1, round(config.workers * config.cpus_per_task))
    arguments["object_store_memory"] = 128 * 1024**2  # tasks only return small summaries
    arguments["runtime_env"] = {"env_vars": {"PYTHONPATH": package_root}}
    return arguments


def _collect(
    ray: Any, refs: list[Any], inputs: list[str], outputs: list[Path], progress: Callable[[int], Any] | None
) -> list[BagRow]:
    """Rows in input order, gathered as the tasks finish."""
    index = {ref: i for i, ref in enumerate(refs)}
    rows: list[BagRow | None] = [None] * len(refs)
    pending = list(refs)
    with progress(len(refs)) if progress else nullcontext() as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                rows[i] = _row(ray, inputs[i], str(outputs[i]), ref)
                if bar is not None:
                    bar.update(1)
    return [row for row in rows if row is not None]


def _row(ray: Any, input_path: str, output_path: str, ref: Any) -> BagRow:
    try:
        return BagRow(input_path, output_path, ray.get(ref))
    except ray.exceptions.RayTaskError as exc:  # the task raised: report its own exception
        cause = exc.cause if exc.cause is not None else exc
        return BagRow(input_path, output_path, error=f"{type(cause).__name__}: {cause}")
    except ray.exceptions.RayError as exc:  # worker or node lost after the retries
        return BagRow(input_path, output_path, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
