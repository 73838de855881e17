"""The families' results as Markdown tables (one per dtype) and a plot of diffc's
value-and-grad time over the best peer's, per family over its sizes."""

from __future__ import annotations

import math
from pathlib import Path

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


def _cpu_over_wall(row: dict) -> str:
    """The implementations whose CPU time was not their wall time (1 thread only): cpu/wall of
    fwd and vg, e.g. "torch 1.9/1.8" (a second core worked) or "diffc 0.4/0.5" (waited)."""
    cells = []
    for name, e in row["impls"].items():
        if any(e.get(phase, {}).get("warning") for phase in ("fwd", "vg")):
            cells.append(f"{name} {e['fwd']['cpu_over_wall']:.2f}/{e['vg']['cpu_over_wall']:.2f}")
    return ", ".join(cells)


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
                    _cpu_over_wall(r),
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
            "cpu/wall ≠ 1 (fwd/vg)",
        ]
        parts.append(f"\n### {dtype}\n\n" + table(header, rows))
    return "\n".join(parts)


def series(results: dict) -> dict:
    """{family: {"labels": [size labels], dtype: [(size index, ratio)]}} for the plots."""
    out = {}
    for r in results["rows"]:
        fam = out.setdefault(r["family"], {"labels": []})
        if r["label"] not in fam["labels"]:
            fam["labels"].append(r["label"])
        if ratio(r) is not None:
            fam.setdefault(r["dtype"], []).append((fam["labels"].index(r["label"]), ratio(r)))
    return out


COLOURS = {"f64": "#1f77b4", "f32": "#ff7f0e"}
TITLE = "diffc value-and-grad time / best peer's (below the dashed 1: diffc faster)"


def plot(results: dict, path) -> str:
    """Writes the plot: PNG through matplotlib, or SVG (written by hand) when the path ends in
    .svg or matplotlib is not importable. Returns where it went."""
    path = Path(path)
    try:
        if path.suffix == ".svg":
            raise ImportError
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = path.with_suffix(".svg")
        path.write_text(svg(series(results)))
        return str(path)
    data = series(results)
    cols, rows = 5, (len(data) + 4) // 5
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (fam, s) in zip(axes.flat, data.items()):
        for dtype, colour in COLOURS.items():
            if s.get(dtype):
                ax.plot(*zip(*s[dtype]), marker="o", label=dtype, color=colour)
        ax.set_xticks(range(len(s["labels"])), s["labels"], rotation=30, fontsize=6, ha="right")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(data) :]:
        ax.set_visible(False)
    fig.suptitle(TITLE, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def svg(data: dict, cols: int = 5, w: int = 230, h: int = 190) -> str:
    """The same panels as the PNG, as SVG: log-scale ratio against size, one line per dtype."""
    ratios = [1.0] + [r for s in data.values() for d in COLOURS for _, r in s.get(d, [])]
    lo, hi = math.floor(math.log10(min(ratios))), math.ceil(math.log10(max(ratios)))
    hi = max(hi, lo + 1)  # the axis spans at least one decade
    left, top, pw, ph = 40, 28, w - 55, h - 80
    height = 30 + h * ((len(data) + cols - 1) // cols)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * w}" height="{height}"'
        ' font-family="sans-serif" font-size="9">',
        f'<text x="10" y="18" font-size="12">{TITLE}</text>',
    ]
    for k, (fam, s) in enumerate(data.items()):
        ox, oy = (k % cols) * w + left, 30 + (k // cols) * h + top
        n = max(len(s["labels"]) - 1, 1)

        def xy(i, r):
            return ox + pw * i / n, oy + ph * (hi - math.log10(r)) / (hi - lo)

        out.append(f'<text x="{ox}" y="{oy - 8}" font-size="11">{fam}</text>')
        out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        for e in range(lo, hi + 1):
            y = xy(0, 10.0**e)[1]
            dash = ' stroke-dasharray="4 3" stroke="#666"' if e == 0 else ' stroke="#eee"'
            out.append(f'<line x1="{ox}" x2="{ox + pw}" y1="{y:.1f}" y2="{y:.1f}"{dash}/>')
            out.append(f'<text x="{ox - 4}" y="{y + 3:.1f}" text-anchor="end">{10.0**e:g}</text>')
        for i, label in enumerate(s["labels"]):
            x = xy(i, 1.0)[0]
            out.append(
                f'<text x="{x:.1f}" y="{oy + ph + 10}" transform="rotate(30 {x:.1f} {oy + ph + 10})">{label}</text>'
            )
        for j, (dtype, colour) in enumerate(COLOURS.items()):
            points = [xy(i, r) for i, r in s.get(dtype, [])]
            if points:
                line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
                out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
            out.append(f'<text x="{ox + pw - 30}" y="{oy + 12 + 11 * j}" fill="{colour}">{dtype}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"
