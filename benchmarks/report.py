"""The results as Markdown tables (printed, and pasted into docs/performance.md) and as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.impls import COMPILED, SUBJECT


def save(results: dict, out_dir: Path) -> list[Path]:
    """latest.json and a timestamped copy in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started"].replace(":", "").replace("-", "")
    text = json.dumps(results, indent=1, sort_keys=False) + "\n"
    paths = [out_dir / "latest.json", out_dir / f"{stamp}.json"]
    for path in paths:
        path.write_text(text)
    return paths


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _us(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _cell(entry: dict, value, fmt) -> str:
    """fmt(value), or why there is none; a value whose check failed is flagged."""
    status = entry.get("status", "skipped")
    if status in ("skipped", "n/a", "error"):
        return status
    if value is None:
        return "—"
    return f"{fmt(value)} MISMATCH" if status == "mismatch" else fmt(value)


def _optional(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def best_peer(row: dict, phase: str):
    """(impl, median µs) of the fastest implementation other than diffc that passed the check."""
    timed = [(e[phase]["median_us"], impl) for impl, e in row.items() if impl != SUBJECT and e.get(phase)]
    timed = [(t, impl) for t, impl in timed if row[impl]["status"] == "ok"]
    if not timed:
        return None, None
    t, impl = min(timed)
    return impl, t


def time_table(results: dict, phase: str) -> str:
    impls = results["meta"]["implementations"]
    rows = []
    for name, row in results["workloads"].items():
        rows.append(
            [name]
            + [_cell(row[i], row[i].get(phase), lambda m: f"{_us(m['median_us'])} / {_us(m['min_us'])}") for i in impls]
        )
    return table(["workload"] + impls, rows)


def ratio_table(results: dict, phase: str) -> str:
    """Each implementation's median over the best peer's: below 1 is faster than the best peer."""
    impls = results["meta"]["implementations"]
    rows, subject_ratios = [], []
    for name, row in results["workloads"].items():
        peer, peer_us = best_peer(row, phase)
        cells = [name, peer or "—"]
        for impl in impls:
            if peer is None:
                cells.append("—")
                continue
            cells.append(_cell(row[impl], row[impl].get(phase), lambda m: f"{m['median_us'] / peer_us:.2f}"))
            if impl == SUBJECT and row[impl].get("status") == "ok" and row[impl].get(phase):
                subject_ratios.append(row[impl][phase]["median_us"] / peer_us)
        rows.append(cells)
    if subject_ratios:
        geomean = math.exp(sum(map(math.log, subject_ratios)) / len(subject_ratios))
        rows.append(["geometric mean", ""] + [f"{geomean:.2f}" if i == SUBJECT else "" for i in impls])
    return table(["workload", "best peer"] + impls, rows)


def compile_table(results: dict) -> str:
    """First call minus a warm call, in ms: cold in the runner's process, warm in a new one."""
    impls = [i for i in results["meta"]["implementations"] if i in COMPILED]
    header = ["workload"] + [f"{i} {phase}" for i in impls for phase in ("fwd", "vg")]
    rows = []
    for name, row in results["workloads"].items():
        cells = [name]
        for impl in impls:
            compile_ms = row[impl].get("compile_ms") or {}
            for phase in ("fwd", "vg"):
                cold, warm = compile_ms.get(f"{phase}_cold"), compile_ms.get(f"{phase}_warm")
                cells.append(_cell(row[impl], cold, lambda c: f"{c:.0f} / {_optional(warm, '.0f')}"))
        rows.append(cells)
    return table(header, rows)


def memory_table(results: dict) -> str:
    impls = results["meta"]["implementations"]
    rows = []
    for name, row in results["workloads"].items():
        cells = [name]
        for impl in impls:
            mem = row[impl].get("memory")
            tape = f" (tape {row[impl]['tape_mib']:.2f})" if "tape_mib" in row[impl] else ""
            cells.append(
                _cell(
                    row[impl],
                    mem,
                    lambda m: f"{_optional(m['vg_call_peak_mib'], '.1f')} / {m['process_peak_mib']:.0f}{tape}",
                )
            )
        rows.append(cells)
    return table(["workload"] + impls, rows)


def check_line(results: dict) -> str:
    checked = [
        (e["check"]["worst"], n, i) for n, row in results["workloads"].items() for i, e in row.items() if "check" in e
    ]
    failed = [
        f"{i} {n} ({e['status']})"
        for n, row in results["workloads"].items()
        for i, e in row.items()
        if e["status"] in ("mismatch", "error")
    ]
    if failed:
        tolerance = results["meta"]["tolerance"]
        return f"**CHECK FAILED** (relative tolerance {tolerance:g} against NumPy): " + ", ".join(failed)
    worst = max(checked, default=(0.0, "", ""))
    return (
        f"Every result agrees with the NumPy peer within a relative {results['meta']['tolerance']:g} "
        f"(worst: {worst[0]:.1e}, {worst[2]} on {worst[1]})."
    )


def render(results: dict) -> str:
    meta = results["meta"]
    parts = [
        f"Measured {meta['started']} on {meta['machine']}, {meta['threads']} thread(s), "
        f"{'quick' if meta['quick'] else 'full'} run; versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f"; diffc at {meta['diffc_source']}.",
    ]
    if meta["unavailable"]:
        parts.append("Skipped: " + "; ".join(f"{i} ({r})" for i, r in meta["unavailable"].items()))
    parts.append(check_line(results))
    has_times = any(e.get("fwd") for row in results["workloads"].values() for e in row.values())
    if has_times:
        parts += [
            "### Forward pass, µs (median / min)",
            time_table(results, "fwd"),
            "### Value and gradient, µs (median / min)",
            time_table(results, "vg"),
            "### Forward pass: median / the best peer's median (below 1: faster than every peer)",
            ratio_table(results, "fwd"),
            "### Value and gradient: median / the best peer's median",
            ratio_table(results, "vg"),
            "### Compile time, ms: first call minus a warm call (cold: the runner's process / warm: a new process)",
            compile_table(results),
        ]
    if any(e.get("memory") for row in results["workloads"].values() for e in row.values()):
        parts += [
            "### Peak memory, MiB: added by one value-and-grad call / the whole process (a new process each);"
            " diffc's tape: the residuals its loops keep for the backward pass",
            memory_table(results),
        ]
    return "\n\n".join(parts)
