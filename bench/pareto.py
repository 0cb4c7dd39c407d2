"""Pareto plots of the quality benchmark: measured speed-up against Digits-FID (top) and PSNR (bottom)."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["pareto_plot"]

#: family -> (colour, marker); smoothcache modes solid lines, peers dashed, baselines dotted.
STYLES = {
    "no cache": ("k", "*"),
    "fewer steps": ("tab:gray", "s"),
    "FORA (reuse every N)": ("tab:brown", "^"),
    "SmoothCache every-N forecast": ("tab:olive", "v"),
    "SmoothCache every-N forecast, fused blocks": ("olive", "1"),
    "SmoothCache greedy reuse": ("tab:blue", "o"),
    "SmoothCache optimal reuse": ("navy", "o"),
    "SmoothCache greedy forecast": ("tab:cyan", "D"),
    "SmoothCache optimal forecast": ("tab:green", "D"),
    "SmoothCache optimal forecast, fused blocks": ("forestgreen", "*"),
    "SmoothCache optimal forecast per-block": ("lime", "d"),
    "SmoothCache optimal forecast, 50-step calibration resampled": ("darkgreen", "d"),
    "diffusers TaylorSeer": ("tab:red", "P"),
    "diffusers FirstBlockCache": ("tab:orange", "X"),
    "diffusers MagCache": ("tab:pink", "p"),
    "diffusers PyramidAttentionBroadcast": ("tab:purple", "h"),
    "diffusers FasterCache": ("plum", "H"),
    "cache-dit DBCache": ("gold", "<"),
    "cache-dit DBCache+TaylorSeer": ("darkgoldenrod", ">"),
}
_LINES = {"smoothcache": "-", "peer": "--", "baseline": ":", "reference": ""}
_METRICS = (("fid", "Digits-FID (lower is better)"), ("psnr", "PSNR vs no cache, dB (higher is better)"))


def pareto_plot(results: dict, path: Path) -> Path:
    """One column per setting, rows FID and PSNR; every family one line through its points (by speed-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(2, len(keys), figsize=(5.4 * len(keys), 8.4), squeeze=False)
    legend: dict[str, object] = {}
    for col, key in enumerate(keys):
        rows = results[key]["methods"]
        families = dict.fromkeys((r["family"], r.get("kind", "baseline")) for r in rows.values())
        for row_index, (metric, label) in enumerate(_METRICS):
            ax = axes[row_index][col]
            for family, kind in families:
                pts = sorted((r["measured"], r[metric]) for r in rows.values()
                             if r["family"] == family and metric in r and math.isfinite(r[metric]))
                if not pts:
                    continue
                color, marker = STYLES.get(family, (None, "x"))
                (line,) = ax.plot(*zip(*pts), marker=marker, linestyle=_LINES.get(kind, ":"), color=color,
                                  label=family, markersize=5, linewidth=1.2)
                legend.setdefault(family, line)
            if metric == "fid" and "fid" in rows.get("no cache", {}):  # no cache +2%: the DDIM 50 target
                ax.axhline(rows["no cache"]["fid"] * 1.02, color="k", linewidth=0.6, alpha=0.4)
            ax.set_title(f"{results[key]['scheduler'].upper()} {results[key]['steps']} steps", fontsize=10)
            ax.set_xlabel("measured speed-up (x)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.legend(legend.values(), legend.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
