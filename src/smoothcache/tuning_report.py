"""The report folder of a :func:`smoothcache.tune` run, written all at once (into a hidden sibling folder,
renamed at the end):

- ``report.md``: what was run, the table of budgets, the target and the budget chosen, the plot, what each
  figure means;
- ``report.json``: the same numbers;
- ``pareto.png``: measured speed-up against the main fidelity figure (mean and worst sample);
- samples, uncached beside each budget: ``samples.png`` (images), ``samples.gif`` (video, one row per budget),
  ``samples/*.wav`` (audio: the uncached clips, and per budget each clip uncached then cached);
- ``schedule_<speed-up>x.json`` for each budget, and ``schedule.json``, the chosen one, when a target is met;
- ``calibration.safetensors``: the calibration profile, to plan other budgets later.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .fidelity import MEANINGS, MEASURES

__all__ = ["format_value", "markdown_table", "plot_pareto", "pyplot", "report_dict", "speedup_label",
           "write_report"]

#: What each function here is given: a :class:`~smoothcache.tuning_result.TuneResult` (not imported: the
#: result imports this module).
_Result = Any

MEETS = "the mean over the held-out samples"


def _finite(value: Any) -> Any:
    """JSON-safe: infinite and NaN floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def speedup_label(speedup: float) -> str:
    """``1.5`` -> ``"1.50x"``: how budgets are named in tables and file names."""
    return f"{speedup:.2f}x"


def format_value(figure: str, value: float | None) -> str:
    """A fidelity figure as the report shows it (``41.23 dB``, ``0.9931``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "identical" if MEASURES[figure][2] == (value > 0) else "inf"
    unit = MEASURES[figure][1]
    if unit == "dB":
        return f"{value:.2f} dB"
    if unit == "x":
        return f"{value:.3f}"
    return f"{value:.4f}"


def _schedule_file(speedup: float) -> str:
    return f"schedule_{speedup_label(speedup)}.json"


def report_dict(result: _Result) -> dict[str, Any]:
    """The numbers of a run, as ``report.json`` holds them."""
    from . import __version__

    chosen = result.chosen
    return _finite({
        "smoothcache_version": __version__,
        "name": result.info.get("name"),
        "kind": result.kind,
        "figures": {f: {"name": MEASURES[f][0], "unit": MEASURES[f][1], "higher_is_better": MEASURES[f][2],
                        "meaning": MEANINGS[f]} for f in result.figures},
        "main_figure": result.main_figure,
        "meets": MEETS,
        "target": result.target,
        "chosen": None if chosen is None else {"speedup": chosen.speedup, "schedule": "schedule.json"},
        "table": [{**row, "schedule": _schedule_file(row["speedup"])} for row in result.table],
        "info": result.info,
    })


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown_table(result: _Result) -> str:
    """The table of budgets in Markdown: speed-ups planned and measured, each figure's mean and worst."""
    header = ["budget", "planned (time)", f"planned ({result.info.get('macs_unit', 'MACs')})", "measured"]
    for figure in result.figures:
        header += [f"{MEASURES[figure][0]} mean", f"{MEASURES[figure][0]} worst"]
    chosen = result.chosen
    if result.target:
        header.append("meets target")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.table:
        cells = [speedup_label(row["speedup"]), _speedup(row["planned_speedup_time"]),
                 _speedup(row["planned_speedup_macs"]), _speedup(row["measured_speedup"])]
        for figure in result.figures:
            cells += [format_value(figure, row[figure]), format_value(figure, row[f"{figure}_worst"])]
        if result.target:
            meets = result.meets(row)
            is_chosen = chosen is not None and chosen.speedup == row["speedup"]
            cells.append(("**chosen**" if is_chosen else "yes") if meets else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _target_line(result: _Result) -> str:
    if not result.target:
        return "No fidelity target was given: pick a budget from the table, or rerun with one (`--min-psnr`)."
    from .errors import TargetNotMetError

    try:
        chosen = result.best()
    except TargetNotMetError as err:
        return f"**Target not met**: {err}. No `schedule.json` was written."
    row = chosen.row
    figures = ", ".join(f"{MEASURES[f][0]} {format_value(f, row[f])}" for f in result.figures)
    names = " and ".join(f"`{name}` {bound:g}" for name, bound in result.target.items())
    return (
        f"**Target** {names}, met when {MEETS} meets it: the fastest budget (largest planned) meeting it "
        f"is **{speedup_label(chosen.speedup)}** (measured {row['measured_speedup']:.2f}x; {figures}), "
        "written as `schedule.json`."
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return f"seeds {', '.join(map(str, seeds))}"


def _report_md(result: _Result, files: dict[str, str]) -> str:
    info = result.info
    cal, held = info["calibration"], info["held_out"]
    seeds = [g["seed"] for g in held]
    lines = [
        f"# SmoothCache tune: {info.get('name')}",
        "",
        f"Calibrated on {_count(len(cal), 'generation')} ({_seeds([g['seed'] for g in cal])}), planned the "
        f"recommended mode (cost: {info['cost']}; the largest reachable speed-up is "
        f"{info['reachable_speedup']:.2f}x), and measured every budget on "
        f"{_count(len(held), 'held-out generation')} ({info['held_out_samples']} {result.kind} samples, "
        f"{_seeds(seeds)}) at "
        f"{info['steps']} steps on {info['device']}: {info['seconds']:.0f} s in all.",
        "",
        markdown_table(result),
        "",
        _target_line(result),
        "",
        f"*Measured* is the median over the held-out inputs of the uncached over the cached time of the same "
        f"input, generated back to back in rotating order (uncached: {info['uncached_seconds']:.2f} s per "
        "generation). *Worst* is the worst single sample. *Planned* speed-ups come from the calibration's "
        "timings and MAC counts.",
        "",
        "![Pareto plot: measured speed-up against fidelity](pareto.png)",
        "",
        "## What the figures mean",
        "",
    ]
    lines += [f"- **{MEASURES[f][0]}**: {MEANINGS[f]}" for f in result.figures]
    lines += ["", "## Files", ""]
    lines += [f"- `{path}`: {what}" for path, what in files.items()]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------- plot
def pyplot():
    """matplotlib's pyplot (Agg backend), or an ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("the tune report needs matplotlib: pip install 'smoothcache-dit[plot]'") from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(result: _Result, path: str | Path) -> Path:
    """PNG: measured speed-up (x) against the main figure, the held-out mean (filled, joined) and the worst
    sample (hollow); budgets another is faster and closer than are drawn grey; the target and the chosen
    budget marked."""
    plt = pyplot()
    figure = result.main_figure
    name, unit, higher = MEASURES[figure]
    rows = [r for r in result.table if r[figure] is not None and math.isfinite(r[figure])]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    x = [r["measured_speedup"] for r in rows]
    y = [r[figure] for r in rows]
    better = (lambda a, b: a >= b) if higher else (lambda a, b: a <= b)
    dominated = [
        any(o is not r and o["measured_speedup"] >= r["measured_speedup"] and better(o[figure], r[figure])
            and (o["measured_speedup"], o[figure]) != (r["measured_speedup"], r[figure]) for o in rows)
        for r in rows
    ]
    ax.plot(x, y, "-", color="tab:blue", alpha=0.5)
    ax.scatter(x, y, c=["0.6" if d else "tab:blue" for d in dominated], zorder=3, label="mean (held-out)")
    worst = [r[f"{figure}_worst"] for r in rows]
    ax.scatter(x, worst, facecolors="none", edgecolors="tab:red", zorder=3, label="worst sample")
    for i, (r, xi, yi) in enumerate(zip(rows, x, y)):
        ax.annotate(speedup_label(r["speedup"]), (xi, yi), textcoords="offset points",
                    xytext=(4, 5 if i % 2 == 0 else -11), fontsize=7)
    for bounded, bound in result.target_bounds.items():
        if bounded == figure:
            ax.axhline(bound, color="tab:green", linestyle="--", linewidth=1,
                       label=f"target {bound:g} {unit}")
    chosen = result.chosen
    if chosen is not None:
        ax.scatter([chosen.row["measured_speedup"]], [chosen.row[figure]], marker="*", s=200,
                   color="tab:green", zorder=4, label=f"chosen {speedup_label(chosen.speedup)}")
    ax.set_xlabel("measured speed-up (x)")
    ax.set_ylabel(f"{name} vs uncached ({unit}; {'higher' if higher else 'lower'} is closer)")
    info = result.info
    ax.set_title(f"{info.get('name')}: speed-up vs fidelity, {info.get('steps')} steps", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- samples
def _row_labels(result: _Result) -> dict[str, str]:
    """Caption of each row of samples: ``uncached``, ``2.00x  41.2 dB``."""
    figure = result.main_figure
    rows = {speedup_label(r["speedup"]): r for r in result.table}
    return {
        label: label if label not in rows else f"{label}  {format_value(figure, rows[label][figure])}"
        for label in result.samples
    }


def _image_grid(result: _Result, path: Path) -> str:
    plt = pyplot()
    labels, captions = list(result.samples), _row_labels(result)
    n = min(x.shape[0] for x in result.samples.values())
    fig, axes = plt.subplots(len(labels), n, figsize=(1.3 * n + 1.2, 1.3 * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        images = result.samples[label].clamp(0, 1)
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = images[c].permute(1, 2, 0).numpy()
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image[..., :4])
        axes[r][0].set_ylabel(captions[label].replace("  ", "\n"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "the first held-out samples: row 1 uncached, then one row per budget (same seeds)"


def _video_gif(result: _Result, path: Path) -> str:
    from PIL import Image, ImageDraw

    labels, captions = list(result.samples), _row_labels(result)
    n = min(x.shape[0] for x in result.samples.values())
    videos = torch.stack([result.samples[label][:n] for label in labels])  # (rows, n, F, C, H, W)
    rows, _, frames, channels, h, w = videos.shape
    scale = max(1, 128 // max(h, w))
    x = (videos.clamp(0, 1) * 255).round().to(torch.uint8)
    x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    h, w = h * scale, w * scale
    band, gap = 14, 2
    width, height = n * (w + gap) - gap, rows * (band + h + gap)
    mode = "L" if channels == 1 else "RGB"
    images = []
    for f in range(frames):
        canvas = Image.new(mode, (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for r, label in enumerate(labels):
            top = r * (band + h + gap)
            draw.text((3, top + 1), captions[label], fill=255 if mode == "L" else (255, 255, 255))
            for c in range(n):
                tile = x[r, c, f].permute(1, 2, 0).numpy()
                tile = tile[..., 0] if channels == 1 else tile[..., :3]
                canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (c * (w + gap), top + band))
        images.append(canvas)
    images[0].save(path, save_all=True, append_images=images[1:], duration=125, loop=0)
    return "the first held-out videos: row 1 uncached, then one row per budget (same seeds), looping"


def _wav(path: Path, clips: list[torch.Tensor], sample_rate: int, gap: float = 0.25) -> None:
    pause = np.zeros(int(round(gap * sample_rate)), dtype=np.float32)
    parts = []
    for clip in clips:
        parts += [clip.float().numpy().reshape(-1), pause]
    stream = np.concatenate(parts[:-1]) if parts else pause
    pcm = np.round(np.clip(stream, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _audio_files(result: _Result, folder: Path) -> dict[str, str]:
    rate = result.info.get("sample_rate") or 16_000
    (folder / "samples").mkdir()
    uncached = result.samples["uncached"]
    _wav(folder / "samples" / "uncached.wav", list(uncached), rate)
    files = {"samples/uncached.wav": f"the first held-out clips, uncached ({rate} Hz)"}
    for label, clips in result.samples.items():
        if label == "uncached":
            continue
        pairs = [clip for a, b in zip(uncached, clips) for clip in (a, b)]
        _wav(folder / "samples" / f"{label}_pairs.wav", pairs, rate, gap=0.15)
        files[f"samples/{label}_pairs.wav"] = f"each clip uncached, then with the {label} budget (same seed)"
    return files


def _write_samples(result: _Result, folder: Path) -> dict[str, str]:
    if result.kind == "image":
        return {"samples.png": _image_grid(result, folder / "samples.png")}
    if result.kind == "video":
        return {"samples.gif": _video_gif(result, folder / "samples.gif")}
    return _audio_files(result, folder)


# ----------------------------------------------------------------------------------------------- folder
def _write_all(result: _Result, folder: Path) -> None:
    files: dict[str, str] = {}
    result.plot(folder / "pareto.png")
    files["pareto.png"] = "measured speed-up against fidelity"
    files.update(_write_samples(result, folder))
    for speedup, schedule in result.schedules.items():
        schedule.save(folder / _schedule_file(speedup))
        files[_schedule_file(speedup)] = f"the schedule planned for {speedup_label(speedup)}"
    chosen = result.chosen
    if chosen is not None:
        chosen.schedule.save(folder / "schedule.json")
        files["schedule.json"] = f"the chosen schedule ({speedup_label(chosen.speedup)}), for the target"
    result.profile.save(folder / "calibration.safetensors")
    files["calibration.safetensors"] = "the calibration (plan other budgets with `smoothcache schedule`)"
    files["report.json"] = "the numbers of this report"
    (folder / "report.json").write_text(json.dumps(report_dict(result), indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(_report_md(result, files), encoding="utf-8")


def write_report(result: _Result, folder: str | Path, overwrite: bool = False) -> Path:
    """Write the report folder, all or nothing: into a hidden sibling first, renamed when complete. An
    existing ``folder`` is refused (``FileExistsError``) unless ``overwrite``, and then replaced only once
    the new report is complete."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder: give a folder for the report")
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists: choose another folder, or overwrite it (--overwrite)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = folder.parent / f".{folder.name}.tmp-{token}"
    staging.mkdir()
    try:
        _write_all(result, staging)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{token}"
            os.rename(folder, old)
            try:
                os.rename(staging, folder)
            except BaseException:
                os.rename(old, folder)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
