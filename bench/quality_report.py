"""Markdown for the quality benchmark: tables per setting, the Pareto comparison and the goals, plainly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from report import ROOT, write_section

GOAL_SPEEDUP, GOAL_FID = 1.7, 0.05


def _interp(points: list[tuple[float, float]], x: float) -> float:
    """FID of a baseline curve (sorted by speed-up) at speed-up x; NaN outside its range."""
    xs, ys = zip(*sorted(points))
    if x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return math.nan
    return float(np.interp(x, xs, ys))


def _curve(rows: dict, family: str, base: dict) -> list[tuple[float, float]]:
    pts = [(r["measured"], r["fid"]) for r in rows.values() if r["family"] == family and "fid" in r]
    return sorted(pts + [(1.0, base["fid"])])


def _table(rows: dict) -> str:
    out = ["| method | steps | theoretical | measured | Digits-FID | precision | recall | class consistency | "
           "PSNR vs no cache |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        if "fid" not in r:
            out.append(f"| {name} | {r['steps']} | - | {r['measured']:.2f}x | failed: `{r['error']}` | | | | |")
            continue
        theo = "-" if math.isnan(r["theoretical"]) else f"{r['theoretical']:.2f}x"
        ps = r.get("psnr_vs_no_cache")
        ps = "-" if ps is None else ("inf" if math.isinf(ps) else f"{ps:.1f} dB")
        out.append(f"| {name} | {r['steps']} | {theo} | {r['measured']:.2f}x | {r['fid']:.2f} | "
                   f"{r['precision']:.3f} | {r['recall']:.3f} | {r['class_consistency']:.3f} | {ps} |")
    return "\n".join(out)


def _comparison(key: str, res: dict) -> tuple[str, dict]:
    rows = res["methods"]
    base = rows["no cache"]
    sc = [(r["measured"], r["fid"], n) for n, r in rows.items() if r["family"] == "SmoothCache" and "fid" in r]
    fewer, fora = _curve(rows, "fewer steps", base), _curve(rows, "FORA", base)
    lines, summary = [], {"below_fewer_steps": 0, "compared_fewer_steps": 0, "below_fora": 0, "compared_fora": 0}
    for speed, fid, name in sorted(sc):
        f_fewer, f_fora = _interp(fewer, speed), _interp(fora, speed)
        cells = []
        for label, ref, tag in (("fewer steps", f_fewer, "fewer_steps"), ("FORA", f_fora, "fora")):
            if math.isnan(ref):
                cells.append(f"{label}: outside its range")
                continue
            summary[f"compared_{tag}"] += 1
            summary[f"below_{tag}"] += fid <= ref
            cells.append(f"{label} {ref:.2f} ({'SmoothCache better' if fid <= ref else 'SmoothCache worse'})")
        lines.append(f"- {name}: {speed:.2f}x, FID {fid:.2f}; at the same measured speed-up " + "; ".join(cells))
    ok = [(s, f, n) for s, f, n in sc if f <= base["fid"] * (1 + GOAL_FID)]
    best = max(ok, default=None)
    summary["best_within_5pct"] = None if best is None else {"name": best[2], "measured": best[0], "fid": best[1]}
    goal = (f"Best SmoothCache point within +5% of no-cache FID ({base['fid']:.2f} -> <= "
            f"{base['fid'] * (1 + GOAL_FID):.2f}): " + ("none" if best is None else
                                                     f"{best[2]}, {best[0]:.2f}x measured, FID {best[1]:.2f}")
            + f" (goal: >= {GOAL_SPEEDUP}x: {'met' if best and best[0] >= GOAL_SPEEDUP else 'not met'}).")
    return "\n".join(lines) + "\n\n" + goal, summary


def _per_block(rows: dict) -> str:
    pairs = {}
    for name, r in rows.items():
        if r["family"] in ("SmoothCache", "SmoothCache per-block") and "fid" in r:
            pairs.setdefault(r["target_fraction"], {})[r["family"]] = r
    out = ["| target compute fraction | per-type: theoretical / measured / FID | per-block: theoretical / measured / FID |",
           "| --- | --- | --- |"]
    for frac in sorted(pairs, reverse=True):
        a, b = pairs[frac].get("SmoothCache"), pairs[frac].get("SmoothCache per-block")
        cell = lambda r: "-" if r is None else f"{r['theoretical']:.2f}x / {r['measured']:.2f}x / {r['fid']:.2f}"
        out.append(f"| {frac:.2f} | {cell(a)} | {cell(b)} |")
    return "\n".join(out)


def write_report(results: dict, args, floor: float, plot: Path, machine: str) -> None:
    blob = {k: {kk: vv for kk, vv in v.items() if kk != "profile"} for k, v in results.items()}
    sections, summaries = [], {}
    for key, res in results.items():
        text, summary = _comparison(key, res)
        summaries[key] = summary
        sections.append(f"### {res['scheduler'].upper()} {res['steps']} steps\n\n{_table(res['methods'])}\n\n"
                        f"SmoothCache against the baselines:\n\n{text}\n\nPer-type against per-block schedules at "
                        f"equal compute (budget mode picks alpha for each target):\n\n{_per_block(res['methods'])}")
    blob["summary"] = summaries
    rel = plot.relative_to(ROOT)
    md = f"""## Quality: the embedded digits DiT (`bench/quality.py`)

{args.samples} samples per method (100 per class, seeds fixed per batch of 100), Digits-FID against the train
split's reference statistics (real-vs-real floor: held-out split, FID {floor:.2f}), precision/recall (k=3),
class consistency, PSNR against the no-cache samples of the same seeds. Guidance scale = the model's. Measured
speed-up: median of {args.rounds} interleaved timing rounds of {args.timing_samples}-sample generations in one
process on {machine}. SmoothCache calibrates on 2 generations of classes 0-9 with seeds disjoint from the
evaluation seeds; "theoretical" is the MAC ratio (torch.utils.flop_counter).

![Pareto: measured speed-up against Digits-FID]({rel})

{chr(10).join(sections)}
"""
    write_section("quality", md, blob)
    (ROOT / "bench" / "results" / "quality_summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
