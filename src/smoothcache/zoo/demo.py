"""``smoothcache demo``: the embedded digits DiT with and without SmoothCache, on the same seeds.

Calibrates on a few classes, builds the schedule at the demo's alpha, generates the same seeds both ways
(timed interleaved in this process), and reports steps, compute fraction, theoretical and measured
speed-up, Digits-FID and class consistency both ways, and PSNR/SSIM between the two; writes a side-by-side
PNG grid and the error-curve plot.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from ..calibration import Calibrator
from ..cache import SmoothCache
from ..flops import MacReport
from ..profile import CalibrationProfile
from ..schedule import Schedule

__all__ = ["DEMO_ALPHA", "calibrate_digits", "run_demo"]

logger = logging.getLogger(__name__)

#: Threshold of the demo's schedule (chosen from the quality benchmark in BENCHMARKS.md).
DEMO_ALPHA = 0.08
#: Classes and seed of the calibration generation (disjoint from the evaluation seeds).
CALIBRATION_CLASSES = list(range(10))
CALIBRATION_SEED = 10_000


def calibrate_digits(pipe, steps: int = 50, classes=CALIBRATION_CLASSES, runs: int = 1, lookahead: int = 3,
                     guidance_scale: float | None = None) -> CalibrationProfile:
    """Calibrate the digits pipeline: ``runs`` generations of ``classes`` at ``steps`` steps."""
    from .digits_model import DIGITS_GUIDANCE_SCALE

    scale = DIGITS_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
    with Calibrator(pipe.transformer, lookahead=lookahead) as cal:
        for run in range(runs):
            pipe(class_labels=list(classes), num_inference_steps=steps, guidance_scale=scale,
                 generator=torch.manual_seed(CALIBRATION_SEED + run), output_type="pt")
    return cal.profile


def _grid(uncached: torch.Tensor, cached: torch.Tensor, path: Path, per_class: int = 3) -> Path:
    """PNG: for each class, ``per_class`` uncached samples (left) beside the same seeds cached (right)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = uncached.shape[0]
    fig, axes = plt.subplots(10, 2 * per_class + 1, figsize=(1.0 * (2 * per_class + 1), 10.5))
    for c in range(10):
        picks = [i for i in range(c, n, 10)][:per_class]
        for j in range(2 * per_class + 1):
            ax = axes[c][j]
            ax.axis("off")
            if j == per_class:
                continue
            source, k = (uncached, j) if j < per_class else (cached, j - per_class - 1)
            if k < len(picks):
                ax.imshow(source[picks[k], 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    axes[0][per_class // 2].set_title("no cache", fontsize=9)
    axes[0][per_class + 1 + per_class // 2].set_title("SmoothCache", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(out: str | Path = "demo_output", steps: int = 50, samples: int = 300, alpha: float | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run the demo and return its results.

    Args:
        out: folder for the PNG grid, the error-curve plot and the schedule.
        steps: DDIM steps.
        samples: images per variant (10 classes in turn, one seed).
        alpha: the schedule's threshold (default :data:`DEMO_ALPHA`).
        progress: receives one line per stage; when given, the pipeline's progress bars are shown too.
    """
    from .digits_model import DIGITS_GUIDANCE_SCALE, digits_evaluator, digits_pipeline
    from .metrics import psnr, ssim
    from .plot import plot_profile

    out_dir = Path(out)
    alpha = DEMO_ALPHA if alpha is None else alpha
    n = samples
    say = progress or (lambda line: None)

    started = time.perf_counter()
    pipe = digits_pipeline()
    evaluator = digits_evaluator()
    say(f"loaded the embedded digits DiT ({sum(p.numel() for p in pipe.transformer.parameters()) / 1e6:.2f}M "
        f"parameters); calibrating on classes 0-9, {steps} DDIM steps ...")
    profile = calibrate_digits(pipe, steps)
    schedule = Schedule.from_profile(profile, alpha)
    macs = MacReport.from_profile(profile)

    labels = [i % 10 for i in range(n)]

    def generate():
        return pipe(class_labels=labels, num_inference_steps=steps, guidance_scale=DIGITS_GUIDANCE_SCALE,
                    generator=torch.manual_seed(0), output_type="pt").images

    say(f"generating {n} digits with and without SmoothCache (alpha={alpha:g}), twice each, interleaved ...")
    pipe.set_progress_bar_config(disable=progress is None, leave=False)
    times = {"no cache": [], "smoothcache": []}
    images = {}
    cache = SmoothCache(pipe.transformer, schedule)
    for _ in range(2):
        for label in times:
            start = time.perf_counter()
            if label == "smoothcache":
                with cache:
                    out = generate()
            else:
                out = generate()
            times[label].append(time.perf_counter() - start)
            images.setdefault(label, out)

    metrics = {label: evaluator.evaluate(images[label], labels) for label in images}
    measured = statistics.median(times["no cache"]) / statistics.median(times["smoothcache"])
    result = {
        "steps": steps, "alpha": alpha, "samples": n, "guidance_scale": DIGITS_GUIDANCE_SCALE,
        "compute_fraction": {"macs": macs.compute_fraction(schedule), **schedule.compute_fraction()},
        "theoretical_speedup": macs.speedup(schedule), "measured_speedup": measured,
        "seconds": times, "metrics": metrics,
        "psnr_db": psnr(images["no cache"], images["smoothcache"]),
        "ssim": ssim(images["no cache"], images["smoothcache"]),
        "cache_stats": cache.stats.by_key(), "real_floor_fid": evaluator.real_floor()["fid"],
    }
    result["files"] = {
        "grid": str(_grid(images["no cache"], images["smoothcache"], out_dir / "samples_side_by_side.png")),
        "error_curves": str(plot_profile(profile, out_dir / "error_curves.png", alpha=alpha)),
        "schedule": str(schedule.save(out_dir / "schedule.json")),
    }
    result["total_seconds"] = time.perf_counter() - started
    return result


def format_table(result: dict) -> str:
    """The demo's side-by-side table, as the CLI prints it."""
    m0, m1 = result["metrics"]["no cache"], result["metrics"]["smoothcache"]
    steps, fraction = result["steps"], result["compute_fraction"]
    per_key = ", ".join(f"{k} {v:.0%}" for k, v in fraction.items() if k != "macs")
    rows = [
        ("denoising steps (DDIM)", f"{steps}", f"{steps}"),
        ("compute fraction (MACs)", "100%", f"{fraction['macs']:.1%}  ({per_key})"),
        ("theoretical speed-up", "1.00x", f"{result['theoretical_speedup']:.2f}x"),
        ("measured speed-up", "1.00x", f"{result['measured_speedup']:.2f}x"),
        (f"Digits-FID (floor {result['real_floor_fid']:.2f})", f"{m0['fid']:.2f}", f"{m1['fid']:.2f}"),
        ("class consistency", f"{m0['class_consistency']:.1%}", f"{m1['class_consistency']:.1%}"),
        ("precision / recall", f"{m0['precision']:.2f} / {m0['recall']:.2f}",
         f"{m1['precision']:.2f} / {m1['recall']:.2f}"),
        ("PSNR / SSIM vs no cache", "-", f"{result['psnr_db']:.1f} dB / {result['ssim']:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"\n{'':<{width}}  {'no cache':>14}  SmoothCache (alpha={result['alpha']:g})"]
    lines += [f"{name:<{width}}  {a:>14}  {b}" for name, a, b in rows]
    files = result["files"]
    lines.append(f"\nwrote {files['grid']}, {files['error_curves']}, {files['schedule']}  "
                 f"({result['total_seconds']:.0f}s)")
    return "\n".join(lines)
