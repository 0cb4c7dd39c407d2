"""Markdown for the quality benchmark: per-setting tables, matched speed-up comparisons, targets, plainly."""

from __future__ import annotations

import math
from pathlib import Path

from .common import rank_agreement, rank_line, write_section
from .matching import GRID, best_within, compare_points, families, targets
from .pareto import pareto_plot

__all__ = ["write_report"]

#: Issue 10: the fastest smoothcache point within this much of no cache's Digits-FID, and the speed-up it
# needs.
FID_GOALS = {"ddim50": (0.02, 2.5), "ddim30": (0.05, 2.0), "dpm20": (0.05, 2.0), "ddim70": (0.02, 2.5)}


def _f(value: float, fmt: str = ".3f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:{fmt}}{unit}"


def _table(rows: dict) -> str:
    out = [
        "| method | family | steps | theoretical | measured | Digits-FID | precision | recall | class "
        "consistency "
        "| PSNR vs no cache | SSIM vs no cache |",
        "| --- " * 11 + "|",
    ]
    for name, r in rows.items():
        theoretical = _f(r["theoretical"], ".2f", "x")
        head = f"| {name} | {r['family']} | {r['steps']} | {theoretical} | {r['measured']:.2f}x |"
        if "error" in r:
            out.append(f"{head} failed: `{r['error']}` | | | | | |")
            continue
        out.append(
            f"{head} {r['fid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['class_consistency']:.3f} | {_f(r.get('psnr'), '.1f', ' dB')} | {_f(r.get('ssim'), '.4f')} |"
        )
    return "\n".join(out)


def _matched(rows: dict) -> tuple[str, dict]:
    """Per smoothcache point: best peer's PSNR / FID at the same measured speed-up, and who wins."""
    points = compare_points(rows)
    lines, summary = [], {}
    for p in points:
        cells = []
        for metric, unit, fmt in (("psnr", " dB", ".1f"), ("fid", "", ".3f")):
            c = p[metric]
            if c["win"] is None:
                cells.append(f"{metric.upper()} {_f(c['ours'], fmt, unit)}, no peer at this speed-up")
                continue
            cells.append(
                f"{metric.upper()} {_f(c['ours'], fmt, unit)} vs {_f(c['best'], fmt, unit)} "
                f"({c['best_peer']}): {'ours' if c['win'] else c['best_peer']} wins"
            )
            s = summary.setdefault(p["family"], {"psnr": [0, 0], "fid": [0, 0]})
            s[metric][0] += bool(c["win"])
            s[metric][1] += 1
        lines.append(f"- {p['name']} ({p['speed']:.2f}x measured): " + "; ".join(cells))
    totals = [
        f"- **{fam}**: higher PSNR than the best peer at {s['psnr'][0]} of {s['psnr'][1]} matched points, "
        f"lower or equal Digits-FID at {s['fid'][0]} of {s['fid'][1]}"
        for fam, s in summary.items()
    ]
    return "\n".join(totals) + "\n\nPoint by point:\n\n" + "\n".join(lines), summary


def _targets(rows: dict) -> tuple[str, list]:
    found = targets(rows)
    out = [
        "| measured speed-up | best smoothcache PSNR | best peer PSNR | margin | best smoothcache FID | "
        "best peer FID | target met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in found:
        (po, pv), (pp, ppv) = t["psnr"]["ours"], t["psnr"]["peer"]
        (fo, fv), (fp, fpv) = t["fid"]["ours"], t["fid"]["peer"]
        margin = pv - ppv if math.isfinite(pv) and math.isfinite(ppv) else math.nan
        met = {True: "yes", False: "**no**", None: "nobody reaches it"}[t["met"]]
        out.append(
            f"| {t['speed']:.2f}x | {_f(pv, '.1f', ' dB')} ({po or '-'}) | {_f(ppv, '.1f', ' dB')} "
            f"({pp or '-'}) | {_f(margin, '+.1f', ' dB')} | {_f(fv)} ({fo or '-'}) | {_f(fpv)} ({fp or '-'}) "
            f"| {met} |"
        )
    return "\n".join(out), found


def _goal(key: str, rows: dict) -> str:
    tolerance, needed = FID_GOALS.get(key, (0.02, 2.5))
    base = rows["no cache"]["fid"]
    lines = []
    for kind, label in (("smoothcache", "smoothcache"), ("peer", "peers")):
        best = best_within(rows, tolerance, kind)
        found = "none" if best is None else f"{best[0]}, {best[1]['measured']:.2f}x, FID {best[1]['fid']:.3f}"
        lines.append(
            f"fastest {label} point within +{tolerance:.0%} of no-cache Digits-FID ({base:.3f} -> <= "
            f"{base * (1 + tolerance):.3f}): {found}"
        )
    ours = best_within(rows, tolerance, "smoothcache")
    met = ours is not None and ours[1]["measured"] >= needed
    return "; ".join(lines) + f". Goal >= {needed}x: {'met' if met else 'not met'}."


def _peer_notes(results: dict) -> str:
    """What each peer needs on DiT (supplied by bench/peers and bench/cachedit), and what documented usage
    does."""
    from .cachedit import CONTEXT as CACHEDIT_CONTEXT
    from .peers import CONTEXT

    present = {
        r["family"] for res in results.values() for r in res["methods"].values() if r.get("kind") == "peer"
    }
    lines = [
        f"- {fam}: {text}"
        for fam, text in {**CONTEXT, **CACHEDIT_CONTEXT}.items()
        if any(p.endswith(" " + fam) for p in present)
    ]
    try:
        from smoothcache.zoo import digits_pipeline

        from .peers import unassisted_failures

        pipe = digits_pipeline()
        found = unassisted_failures(pipe)
        if any(p.startswith("cache-dit") for p in present):
            from .cachedit import documented_usage

            found["cache-dit: enable_cache(pipe) with its defaults"] = documented_usage(pipe) or "runs"
        raw = "\n".join(
            f"- {stage}: `{message.strip().splitlines()[0].replace('`', chr(39))}`"
            for stage, message in found.items()
        )
    except Exception as err:  # noqa: BLE001  informative only; never lose the report over it
        raw = f"(could not collect: {type(err).__name__}: {err})"
    return (
        "\n".join(lines)
        + "\n\nWith documented usage alone, on this model (first line of each message):\n\n"
        + raw
    )


def write_report(results: dict, out: Path, benchmarks: Path) -> None:
    """The BENCHMARKS.md section and ``out/pareto.png`` from the per-setting results; ``out/quality.json``
    keeps the comparison summaries."""
    plot = pareto_plot(results, out / "pareto.png")
    first = next(iter(results.values()))
    sections, summaries = [], {}
    for key, res in results.items():
        rows = res["methods"]
        matched, summary = _matched(rows)
        target_table, found = _targets(rows)
        summaries[key] = {"matched": summary, "targets": found, "goal": _goal(key, rows)}
        skipped = "\n".join(
            f"- {what}: {why.rstrip(': ') or 'error'}" for what, why in res.get("skipped", {}).items()
        )
        skipped = skipped or "- none"
        runs = "; ".join(
            f"run {i}: {r['date']}, {'timing only (speed-ups re-measured), ' if r.get('timing_only') else ''}"
            f"{r['rounds']} timing round(s), groups {' '.join(r.get('groups', []))}, "
            f"{r['seconds'] / 60:.0f} min"
            for i, r in enumerate(res["runs"])
        )
        agreement = rank_agreement(rows, "psnr", True)
        summaries[key]["rank_agreement"] = agreement
        sections.append(
            f"### {res['scheduler'].upper()} {res['steps']} "
            f"steps\n\n{_table(rows)}\n\n{rank_line(agreement, 'PSNR')}"
            f"\n\nLeft out:\n\n{skipped}\n\n"
            f"Runs ({runs}).\n\n#### Matched speed-up: each smoothcache mode against the best "
            f"peer\n\n{matched}\n\n"
            "#### Target: best smoothcache mode >= best peer + 2 dB PSNR, Digits-FID no "
            f"worse\n\n{target_table}\n\n"
            f"{summaries[key]['goal']}"
        )
    try:
        rel = plot.relative_to(benchmarks.parent)
    except ValueError:
        rel = plot
    ours = ", ".join(sorted({f for res in results.values() for f in families(res["methods"], "smoothcache")}))
    peers = ", ".join(sorted({f for res in results.values() for f in families(res["methods"], "peer")}))
    batch = min(100, first["samples"])
    md = f"""## Quality: the embedded digits DiT (`python -m bench.quality`)

{first["samples"]} samples per method (classes 0-9 in turn, one fixed seed per batch of {batch}),
Digits-FID against the train split's reference statistics (real-vs-real floor: held-out split, FID
{first["floor"]:.2f}), precision/recall (k=3), class consistency, PSNR and SSIM against the no-cache samples
of the same seeds. Guidance scale = the model's. Measured speed-up: median over interleaved timing rounds of
{first["timing_samples"]}-sample generations in one process (every method once per round, order rotated) of
the no-cache time, interpolated between no-cache runs placed before, every 4 methods and after, over the
method's time (so load that drifts during a round cancels out); a "timing only" run re-measures the speed-ups
of the saved methods on an otherwise idle machine and its figures replace the first run's; machine:
{first["runs"][0]["machine"]}. SmoothCache calibrates on 2 generations of classes 0-9 with seeds disjoint from
the evaluation seeds; its planned schedules aim at theoretical speed-ups (MACs, torch.utils.flop_counter;
the modes planned in time: wall time as a second calibration measured it, 2 generations at the timed batch,
since a plan in time holds for the batch it was timed at) and are placed by their measured ones.
"theoretical" for peers is the attn1/ff work they really executed, MAC-weighted; cache-dit skips whole blocks
(their norms and modulation too), so its measured speed-up can exceed that figure.

Smoothcache modes: {ours or "-"}. Peers: {peers or "-"}.

Matched speed-up: each family's Pareto front (points not beaten on both speed-up and the metric), interpolated
linearly in measured speed-up; "no peer" where no peer's front spans that speed-up. Grid for the target:
{", ".join(f"{g:g}x" for g in GRID)}.

![Pareto: measured speed-up against Digits-FID (top, thin line: no cache +2%) and PSNR (bottom)]({rel})

{(chr(10) * 2).join(sections)}

### Peers on DiT

{_peer_notes(results)}
"""
    write_section(
        "quality",
        md,
        {"settings": list(results), "summary": summaries},
        results_dir=out,
        benchmarks=benchmarks,
    )
