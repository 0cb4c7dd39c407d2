"""``smoothcache demo``: an embedded model with and without SmoothCache, on the same seeds.

Calibrates on one generation of every class, plans the schedule (the recommended mode by default, or the
original's greedy scan at a threshold), generates the same seeds both ways (timed interleaved in this
process), and reports steps, compute fraction, theoretical and measured speed-up, the model's quality metrics
both ways and the fidelity of the cached samples to the uncached ones; writes the samples, labelled uncached
and cached (a PNG for the digits, WAVs for the audio model, a GIF for the video model), the error-curve plot
and the schedule into a subfolder per model (``demo_output/digits/`` ...).
"""

from __future__ import annotations

import importlib
import logging
import statistics
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..cache import SmoothCache
from ..calibration import Calibrator
from ..costs import MacReport
from ..errors import BudgetError
from ..profile import CalibrationProfile
from ..schedule import Schedule
from .demo_outputs import (  # noqa: F401  (re-exported: the demo's public names)
    FIDELITY,
    FIDELITY_NOTES,
    audio_fidelity,
    image_fidelity,
    write_audio_pairs,
    write_image_grid,
)

__all__ = ["DEMO_MODELS", "DEMO_SPEEDUP", "DemoModel", "calibrate_pipeline", "format_table", "run_demo"]

logger = logging.getLogger(__name__)

#: Theoretical speed-up the demo's default schedule is planned for (the recommended mode, see README).
DEMO_SPEEDUP = 2.0
#: Guidance scale of the video demo: ``smoothcache.zoo.video_model.VIDEO_GUIDANCE_SCALE`` (kept literal so
# that
#: importing the demo does not import diffusers; a test checks they agree).
VIDEO_GUIDANCE = 4.0
#: Seed of the calibration generations (disjoint from the evaluation seeds, which start at 0).
CALIBRATION_SEED = 10_000


def _load(path: str) -> Callable:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class DemoModel:
    """What the demo needs to know about one embedded model.

    Args:
        name: the ``--model`` name.
        pipeline, evaluator: ``"module:function"`` loaders (imported when used).
        output: attribute of the pipeline output holding the samples (``images``, ``audios``, ``frames``).
        steps: default number of steps; sampler: its description for the table.
        fidelity: ``"module:function"`` of ``f(uncached, cached) -> {metric: value}`` (keys of
            :data:`FIDELITY`).
        write: ``"module:function"`` of ``f(folder, uncached, cached, cached_label=...)`` writing the samples
            both ways, each side labelled (``cached_label`` names the schedule); returns
            ``{path: what it holds}``.
        guidance: the guidance scale to call the pipeline with (None: the pipeline's default).
        samples, quick_samples: samples per variant by default and with ``--quick`` (about a minute on 2
        cores).
    """

    name: str
    pipeline: str
    evaluator: str
    output: str
    steps: int
    sampler: str
    fidelity: str
    write: str
    guidance: float | None = None
    samples: int = 300
    quick_samples: int = 100

    def load(self, what: str) -> Callable:
        """The function a ``"module:function"`` field names (``"pipeline"``, ``"evaluator"``,
        ``"fidelity"``...)."""
        return _load(getattr(self, what))


DEMO_MODELS = {
    "digits": DemoModel(
        "digits",
        "smoothcache.zoo.digits_model:digits_pipeline",
        "smoothcache.zoo.digits_model:digits_evaluator",
        "images",
        50,
        "DDIM",
        "smoothcache.zoo.demo_outputs:image_fidelity",
        "smoothcache.zoo.demo_outputs:write_image_grid",
        guidance=1.0,
    ),  # DIGITS_GUIDANCE_SCALE (also digits_pipeline()'s default)
    "audio": DemoModel(
        "audio",
        "smoothcache.zoo.audio_model:audio_pipeline",
        "smoothcache.zoo.audio_model:audio_evaluator",
        "audios",
        100,
        "DPM-Solver++(3M) SDE",
        "smoothcache.zoo.demo_outputs:audio_fidelity",
        "smoothcache.zoo.demo_outputs:write_audio_pairs",
        guidance=2.0,
        samples=100,
        quick_samples=20,
    ),  # AUDIO_GUIDANCE_SCALE (classifier-free guidance: two calls per step)
    "video": DemoModel(
        "video",
        "smoothcache.zoo.video_model:video_pipeline",
        "smoothcache.zoo.video_eval:video_evaluator",
        "frames",
        30,
        "rectified flow (Euler)",
        "smoothcache.zoo.video_eval:video_fidelity",
        "smoothcache.zoo.video_eval:write_video_gif",
        guidance=VIDEO_GUIDANCE,
        samples=100,
        quick_samples=20,
    ),
}


def calibrate_pipeline(
    pipe,
    steps: int,
    classes: Sequence[int] = tuple(range(10)),
    runs: int = 1,
    lookahead: int = 3,
    guidance_scale: float | None = None,
) -> CalibrationProfile:
    """Calibrate an embedded pipeline: ``runs`` generations of ``classes`` at ``steps`` steps (seeds
    10000+)."""
    extra = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
    with Calibrator(pipe.transformer, lookahead=lookahead) as cal:
        for run in range(runs):
            pipe(
                class_labels=list(classes),
                num_inference_steps=steps,
                generator=torch.manual_seed(CALIBRATION_SEED + run),
                output_type="pt",
                **extra,
            )
    return cal.profile


def demo_schedule(
    profile: CalibrationProfile, alpha: float | None = None, speedup: float | None = None
) -> Schedule:
    """The demo's schedule: the original's greedy scan at ``alpha`` if given, else the recommended mode
    (``Schedule.for_budget``'s defaults) for ``speedup`` (default :data:`DEMO_SPEEDUP`)."""
    if alpha is not None:
        return Schedule.from_profile(profile, alpha)
    try:
        return Schedule.for_budget(profile, speedup=speedup or DEMO_SPEEDUP)  # the recommended mode
    except BudgetError as err:  # a small model's fixed costs: as fast as these tables allow
        logger.warning("%s; the demo plans the best reachable speed-up, %.3gx", err, 1 / err.best)
        return Schedule.for_budget(profile, compute_fraction=err.best)


def run_demo(
    model: str = "digits",
    out: str | Path = "demo_output",
    steps: int | None = None,
    samples: int = 300,
    alpha: float | None = None,
    speedup: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the demo and return its results.

    Args:
        model: one of :data:`DEMO_MODELS`.
        out: parent folder: the labelled samples, the error-curve plot and the schedule go to its subfolder
            named after the model (``demo_output/digits/``), so the models' demos do not overwrite each other.
        steps: sampler steps (default: the model's).
        samples: samples per variant (the 10 classes in turn, seed 0).
        alpha, speedup: the schedule (see :func:`demo_schedule`).
        progress: receives one line per stage; when given, the pipeline's progress bars are shown too.
    """
    if model not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {model!r}; choose one of {', '.join(DEMO_MODELS)}")
    spec = DEMO_MODELS[model]
    from .plot import plot_profile

    out_dir = Path(out) / model
    steps = steps or spec.steps
    say = progress or (lambda line: None)
    started = time.perf_counter()
    pipe = _load(spec.pipeline)()
    evaluator = _load(spec.evaluator)()
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    say(
        f"loaded the embedded {model} model ({params:.2f}M parameters); calibrating on classes 0-9, "
        f"{steps} {spec.sampler} steps ..."
    )
    profile = calibrate_pipeline(pipe, steps, guidance_scale=spec.guidance)
    schedule = demo_schedule(profile, alpha, speedup)
    macs = MacReport.from_profile(profile)
    labels = [i % 10 for i in range(samples)]

    extra = {} if spec.guidance is None else {"guidance_scale": spec.guidance}

    def generate():
        result = pipe(
            class_labels=labels,
            num_inference_steps=steps,
            generator=torch.manual_seed(0),
            output_type="pt",
            **extra,
        )
        return getattr(result, spec.output)

    say(
        f"generating {samples} samples with and without SmoothCache ({_describe(schedule)}), twice each, "
        "interleaved ..."
    )
    pipe.set_progress_bar_config(disable=progress is None, leave=False)
    times: dict[str, list[float]] = {"no cache": [], "smoothcache": []}
    outputs = {}
    cache = SmoothCache(pipe.transformer, schedule)
    for _ in range(2):
        for label in times:
            start = time.perf_counter()
            if label == "smoothcache":
                with cache:
                    sample = generate()
            else:
                sample = generate()
            times[label].append(time.perf_counter() - start)
            outputs.setdefault(label, sample)

    uncached, cached = outputs["no cache"], outputs["smoothcache"]
    metrics = {label: evaluator.evaluate(outputs[label], labels) for label in outputs}
    result = {
        "model": model,
        "steps": steps,
        "sampler": spec.sampler,
        "samples": samples,
        "schedule": _describe(schedule),
        "compute_fraction": {"macs": macs.compute_fraction(schedule), **schedule.compute_fraction()},
        "theoretical_speedup": macs.speedup(schedule),
        "measured_speedup": statistics.median(times["no cache"]) / statistics.median(times["smoothcache"]),
        "seconds": times,
        "metrics": metrics,
        "fidelity": _load(spec.fidelity)(uncached, cached),
        "cache_stats": cache.stats.by_key(),
        "real_floor_fid": evaluator.real_floor()["fid"],
        "files": {
            "samples": {
                str(path): what
                for path, what in _load(spec.write)(
                    out_dir, uncached, cached, cached_label=_label(schedule)
                ).items()
            },
            "error_curves": str(plot_profile(profile, out_dir / "error_curves.png", alpha=alpha)),
            "schedule": str(schedule.save(out_dir / "schedule.json")),
        },
    }
    result["total_seconds"] = time.perf_counter() - started
    return result


def _label(schedule: Schedule) -> str:
    """Short name of the cached side in the written samples: ``SmoothCache 2.00x plan``."""
    meta = schedule.metadata
    if meta.get("planner") == "optimal":
        return f"SmoothCache {1 / meta['budget']:.2f}x plan"
    return f"SmoothCache alpha={meta.get('alpha', 0):g}"


def _describe(schedule: Schedule) -> str:
    meta = schedule.metadata
    if meta.get("planner") == "optimal":
        unit = "wall time at the calibration's batch" if meta.get("cost") == "time" else "MACs"
        return f"{schedule.predictor}, optimal plan for {1 / meta['budget']:.2f}x in {unit}"
    return f"{schedule.predictor}, greedy scan at alpha={meta.get('alpha', 0):g}"


def format_table(result: dict) -> str:
    """The demo's side-by-side table, as the CLI prints it."""
    m0, m1 = result["metrics"]["no cache"], result["metrics"]["smoothcache"]
    steps, fraction = result["steps"], result["compute_fraction"]
    per_key = ", ".join(f"{k} {v:.0%}" for k, v in fraction.items() if k != "macs")
    rows = [
        (f"denoising steps ({result['sampler']})", f"{steps}", f"{steps}"),
        ("compute fraction (MACs)", "100%", f"{fraction['macs']:.1%}  ({per_key})"),
        ("theoretical speed-up", "1.00x", f"{result['theoretical_speedup']:.2f}x"),
        ("measured speed-up", "1.00x", f"{result['measured_speedup']:.2f}x"),
        (f"FID (real floor {result['real_floor_fid']:.2f})", f"{m0['fid']:.2f}", f"{m1['fid']:.2f}"),
        ("class consistency", f"{m0['class_consistency']:.1%}", f"{m1['class_consistency']:.1%}"),
    ]
    for key in ("precision", "recall", "motion_consistency"):
        if key in m0:
            rows.append((key.replace("_", " "), f"{m0[key]:.3f}", f"{m1[key]:.3f}"))
    rows += [(FIDELITY[k][0], "-", FIDELITY[k][1].format(v)) for k, v in result["fidelity"].items()]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"\n{result['model']}: {result['samples']} samples; SmoothCache = {result['schedule']}",
        f"{'':<{width}}  {'no cache':>14}  SmoothCache",
    ]
    lines += [f"{name:<{width}}  {a:>14}  {b}" for name, a, b in rows]
    notes = [FIDELITY_NOTES[k] for k in result["fidelity"] if k in FIDELITY_NOTES]
    if notes:
        lines.append("")
        lines += [
            textwrap.fill(note, width=110, subsequent_indent="  ", break_on_hyphens=False) for note in notes
        ]
    files = result["files"]
    written = {
        **files["samples"],
        files["error_curves"]: "calibration error curves",
        files["schedule"]: "the schedule",
    }
    lines.append(f"\nwrote ({result['total_seconds']:.0f}s):")
    lines += [f"  {path}  {what}" for path, what in written.items()]
    return "\n".join(lines)
