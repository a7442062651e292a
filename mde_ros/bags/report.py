"""Human-readable end-of-run summaries for `mde-ros bag` (one bag, and the table over many)."""

from __future__ import annotations

from typing import Any

from .offline import BagSummary


def summary_lines(summary: BagSummary) -> list[str]:
    s = summary
    lines = ["=== mde-ros bag ===", f"input: {s.input}"]
    lines += [f"  {role}: {topic}" for role, topic in s.topics.items()]
    lines.append(f"model: {s.model} on {s.backend}")
    written = s.metric + s.relative
    lines.append(
        f"frames: {s.frames} read, {written} with depth ({s.metric} metric, {s.relative} relative) "
        f"in {s.elapsed_s:.1f} s ({s.load_s:.1f} s model load, then {s.frames_per_second:.2f} frames/s)"
    )
    if s.skipped:
        lines.append("skipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(s.skipped.items())))
    if s.scale:
        origin = s.scale[0].first_stamp
        parts = [
            f"{seg.status} {seg.first_stamp - origin:.2f}-{seg.last_stamp - origin:.2f} s"
            f" ({seg.frames} frames)"
            for seg in s.scale
        ]
        lines.append("scale over time: " + " -> ".join(parts))
    lines.append(f"scale at the end: {s.scale_message}")
    if s.scale_counters:
        lines.append(
            "scale rejections: " + ", ".join(f"{k} {v}" for k, v in sorted(s.scale_counters.items()))
        )
    lines.append(f"written: {s.output}")
    lines += [f"  {topic} x{count}" for topic, count in s.written.items()]
    return lines


def fleet_table(rows: list[Any]) -> str:
    """One line per bag: status, frames, depth frames, frames/s, attempts, output or error."""
    header = ("bag", "status", "frames", "metric", "relative", "skipped", "frames/s", "output / error")
    table = [header]
    for row in rows:
        s = row.summary
        if row.ok:
            cells = (
                row.input,
                "ok",
                s.frames,
                s.metric,
                s.relative,
                sum(s.skipped.values()),
                f"{s.frames_per_second:.2f}",
                s.output,
            )
        else:
            cells = (row.input, "FAILED", "-", "-", "-", "-", "-", row.error)
        table.append(tuple(str(c) for c in cells))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in table
    ]
    ok = sum(row.ok for row in rows)
    lines.append(f"{ok} of {len(rows)} bags done, {len(rows) - ok} failed")
    return "\n".join(lines)
