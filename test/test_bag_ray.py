"""`mde-ros bag` over several bags as Ray tasks on a local Ray instance (2 CPUs): the good bags give
their output bags, the corrupt one a clear failure row, and the run says so in its exit code."""

from __future__ import annotations

import pytest
from bag_helpers import record_castel
from test_bag import read_bag, run_bag

pytestmark = pytest.mark.slow
FRAMES = 3


@pytest.mark.timeout(900)
def test_ray_fan_out_with_a_corrupt_bag(tiny_onnx, tmp_path):
    from mde_ros.data.visp import castel_frames

    frames = castel_frames(indices=list(range(FRAMES)))
    inputs = tmp_path / "bags"
    good = {"drive_a": ("mcap", False), "drive_b": ("sqlite3", True)}
    stamps = {name: record_castel(inputs / name, frames, *kind) for name, kind in good.items()}
    # A bag cut short in the middle of its storage file (e.g. a recorder that was killed).
    record_castel(inputs / "drive_c", frames, "mcap")
    storage = inputs / "drive_c" / "drive_c.mcap"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])

    out = tmp_path / "out"
    names = sorted(p.name for p in inputs.iterdir())
    result = run_bag(*names, "-o", out, "--model", tiny_onnx, "--backend", "onnxruntime",
                     "--workers", "2", "--retries", "1", timeout=800, cwd=inputs)  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("drive_")}
    assert rows.keys() == {"drive_a", "drive_b", "drive_c"}, result.stdout
    for name in good:
        assert rows[name].split()[1:4] == ["ok", str(FRAMES), "0"], rows[name]
        depth = read_bag(out / name)["/camera/depth/relative"]
        assert [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for _, m in depth] == stamps[name]
    assert rows["drive_c"].split()[1] == "FAILED" and "BagError" in rows["drive_c"], rows["drive_c"]
    assert "drive_c" in rows["drive_c"].split("BagError", 1)[1]  # the error names the bag
    assert "2 of 3 bags done, 1 failed" in result.stdout
    assert "3/3" in result.stderr and "bag/s" in result.stderr  # progress over bags
    assert not (out / "drive_c").exists()  # no output that looks complete for the failed bag
    assert not list(out.glob(".*partial*"))
