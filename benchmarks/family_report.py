"""The families' results as Markdown tables (one per dtype) and a plot of diffc's
value-and-grad time over the best peer's, per family over its sizes."""

from __future__ import annotations

from benchmarks.report import table


def best_peer(row: dict, phase: str = "vg"):
    """(name, median µs) of the fastest peer that passed the check at this size, or None."""
    timed = [(e[phase]["median_us"], name) for name, e in row["impls"].items() if name != "diffc" and phase in e]
    if not timed:
        return None
    us, name = min(timed)
    return name, us


def ratio(row: dict, phase: str = "vg"):
    """diffc's median over the best peer's: below 1, diffc is faster than every peer."""
    ours, best = row["impls"].get("diffc", {}), best_peer(row, phase)
    if phase not in ours or best is None:
        return None
    return ours[phase]["median_us"] / best[1]


def _us(entry: dict, phase: str) -> str:
    if phase in entry:
        return f"{entry[phase]['median_us']:,.0f}"
    return entry.get("status", "—").upper()


def _warnings(row: dict) -> str:
    found = [
        f"{name} {phase}: {e[phase]['warning']}"
        for name, e in row["impls"].items()
        for phase in ("fwd", "vg")
        if e.get(phase, {}).get("warning")
    ]
    return "; ".join(found)


def render(results: dict) -> str:
    meta = results["meta"]
    threads = "1 thread (pinned to one core)" if meta["pinned_to_one_core"] else f"{meta['threads']} threads"
    peers = ", ".join(meta["peers"]) or "none"
    missing = ", ".join(meta["missing_peers"]) or "none"
    parts = [f"Families, {threads}; peers: {peers}; missing: {missing}. Times are medians in µs."]
    for dtype in dict.fromkeys(r["dtype"] for r in results["rows"]):
        rows = []
        for r in results["rows"]:
            if r["dtype"] != dtype:
                continue
            ours = r["impls"].get("diffc", {})
            best = best_peer(r)
            vg_ratio, fwd_ratio = ratio(r), ratio(r, "fwd")
            grad_cost = ours["vg"]["median_us"] / ours["fwd"]["median_us"] if "vg" in ours else None
            compile_s = ours.get("compile_s", {})
            rows.append(
                [
                    r["family"],
                    r["label"],
                    _us(ours, "fwd"),
                    _us(ours, "vg"),
                    "—" if grad_cost is None else f"{grad_cost:.1f}",
                    f"{compile_s['fwd']:.2f} + {compile_s['vg']:.2f}" if compile_s else "—",
                    "—" if best is None else f"{best[0]} {best[1]:,.0f}",
                    "—" if fwd_ratio is None else f"{fwd_ratio:.2f}",
                    "—" if vg_ratio is None else f"**{vg_ratio:.2f}**" if vg_ratio <= 1.0 else f"{vg_ratio:.2f}",
                    _warnings(r),
                ]
            )
        header = [
            "family",
            "size",
            "diffc fwd",
            "diffc vg",
            "vg/fwd",
            "compile s (fwd + vg)",
            "best peer vg",
            "fwd ratio",
            "vg ratio",
            "cpu/wall ≠ 1",
        ]
        parts.append(f"\n### {dtype}\n\n" + table(header, rows))
    return "\n".join(parts)


def plot(results: dict, path) -> str:
    """Writes the plot; returns '' or why it was not written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not written: matplotlib is not importable"
    families = list(dict.fromkeys(r["family"] for r in results["rows"]))
    cols = 5
    fig, axes = plt.subplots(
        (len(families) + cols - 1) // cols,
        cols,
        figsize=(3.2 * cols, 2.8 * ((len(families) + cols - 1) // cols)),
        squeeze=False,
    )
    for ax, fam in zip(axes.flat, families):
        for dtype in dict.fromkeys(r["dtype"] for r in results["rows"]):
            rows = [r for r in results["rows"] if r["family"] == fam and r["dtype"] == dtype]
            points = [(i, ratio(r)) for i, r in enumerate(rows) if ratio(r) is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=dtype)
            ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, fontsize=6, ha="right")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(families) :]:
        ax.set_visible(False)
    fig.suptitle("diffc value-and-grad time / best peer's (below 1: diffc faster)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""
