"""What every benchmark shares: where results go, a one-line machine description, BENCHMARKS.md sections."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

__all__ = ["BENCHMARKS", "RESULTS", "ROOT", "machine", "rank_agreement", "write_section"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    """Processor, torch threads, torch and Python versions, e.g. ``x86_64, 2 threads, torch 2.13.0+cpu,
    ...``."""
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def write_section(name: str, markdown: str, results: dict, *, results_dir: Path = RESULTS,
                  benchmarks: Path = BENCHMARKS) -> None:
    """Replace the ``name`` section of ``benchmarks`` and save ``results_dir/<name>.json``.

    Args:
        name: section name; the section sits between ``<!-- name:start -->`` and ``<!-- name:end -->``
            (appended when the markers are missing).
        markdown: the section's text.
        results: what the section was made from, saved as JSON next to it.
        results_dir: folder for the JSON (``bench/results`` by default; smoke runs pass a scratch folder).
        benchmarks: the markdown file (``BENCHMARKS.md`` by default).
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = benchmarks.read_text() if benchmarks.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    benchmarks.parent.mkdir(parents=True, exist_ok=True)
    benchmarks.write_text(text)


def rank_agreement(rows: dict, figure: str, higher_is_better: bool, min_points: int = 3) -> dict[str, dict]:
    """Per family with a planned error at ``min_points`` budgets or more: Spearman's rank correlation between
    the planned error and the measured error (``figure``, negated when higher is better) over its budget
    sweep. 1 means the plans rank exactly as their outputs do."""
    from scipy.stats import spearmanr

    points: dict[str, list[tuple[float, float]]] = {}
    for r in rows.values():
        if r.get("planned_error") is not None and figure in r:
            measured = -r[figure] if higher_is_better else r[figure]
            points.setdefault(r["family"], []).append((r["planned_error"], measured))
    out = {}
    for family, pts in points.items():
        if len(pts) >= min_points:
            rho = spearmanr([p for p, _ in pts], [m for _, m in pts]).statistic
            out[family] = {"rho": float(rho), "points": len(pts)}
    if len(out) > 1:  # across predictors too: do the plans of one family rank against another's as they run?
        pooled = [pt for family in out for pt in points[family]]
        rho = spearmanr([p for p, _ in pooled], [m for _, m in pooled]).statistic
        out["all plans pooled"] = {"rho": float(rho), "points": len(pooled)}
    return out


def rank_line(agreement: dict[str, dict], figure: str) -> str:
    """One sentence for the report."""
    if not agreement:
        return ""
    cells = "; ".join(f"{family}: {a['rho']:+.2f} ({a['points']} plans)" for family, a in agreement.items())
    return (
        "Plans against outputs: Spearman rank correlation between each plan's calibrated error and its "
        "measured "
        f"{figure} error over the budget sweep (1: the plans rank as their outputs do): {cells}."
    )
