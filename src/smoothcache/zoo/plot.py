"""Figures: the calibration error curves per branch type (the analogue of the paper's Figure 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..profile import CalibrationProfile

__all__ = ["plot_profile"]


def plot_profile(
    profile: CalibrationProfile,
    path: str | Path,
    keys: Iterable[str] | None = None,
    alpha: float | None = None,
    title: str | None = None,
) -> Path:
    """Save a PNG with one panel per branch type: mean error against step for k = 1..K, ±1 std shaded.

    The error at step ``t`` for lookahead ``k`` is ``|y_t - y_{t-k}|_1 / |y_t|_1``. ``alpha`` draws the
    threshold line.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'smoothcache-dit[plot]'") from err

    keys = list(keys) if keys is not None else profile.keys
    if not keys:
        raise ValueError("nothing to plot: the profile has no branches")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False, sharey=True)
    steps = np.arange(profile.num_steps)
    for ax, key in zip(axes[0], keys):
        mean, std = profile.mean_errors(key)
        for k in range(1, profile.lookahead + 1):
            valid = ~np.isnan(mean[k - 1])
            t = steps[valid] + k
            m, s = mean[k - 1][valid], std[k - 1][valid]
            (line,) = ax.plot(t, m, label=f"k={k}", linewidth=1.4)
            ax.fill_between(t, np.clip(m - s, 0, None), m + s, color=line.get_color(), alpha=0.2, linewidth=0)
        if alpha is not None:
            ax.axhline(alpha, color="black", linestyle="--", linewidth=1, label=f"alpha={alpha:g}")
        n_blocks = len(profile.blocks(key))
        runs = f"{profile.runs} run" + ("s" if profile.runs != 1 else "")
        ax.set_title(f"{key} ({n_blocks} block{'s' if n_blocks != 1 else ''}, {runs})")
        ax.set_xlabel("denoising step t")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("rel. L1 error |y_t - y_{t-k}| / |y_t|")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(title or f"SmoothCache calibration: {profile.model or 'model'}, {profile.num_steps} steps")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
