"""Audio and video in the paper's settings: its Tables 2 and 3 in miniature, on the models trained here.

- audio: the spoken-digits Stable-Audio-style DiT, DPM-Solver++(3M) SDE, 100 steps (Stable Audio Open's
  sampler);
- video: the moving-digits Latte DiT, rectified flow (Euler), 30 steps (Open-Sora's sampler).

Methods: no cache, fewer steps, FORA (reuse every N), every-N linear forecast, SmoothCache greedy reuse (the
paper's schedules) and optimal reuse / optimal linear forecast over a speed-up sweep, and diffusers'
TaylorSeer on the same branches. Quality: the model's evaluator (FID on its features, class consistency, ...)
and fidelity to the no-cache samples of the same seeds (log-spectral distance and SNR for audio, PSNR and SSIM
for video). Measured speed-up: :func:`bench.quality.time_methods` (interleaved rounds, no cache interpolated
around each method).

    python -m bench.modality --model audio
    python -m bench.modality --model video --samples 100 --rounds 1 --out /tmp/smoke   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import time
from pathlib import Path

import torch

from smoothcache import MacReport, Schedule, ScheduleError, SmoothCache
from smoothcache.targets import find_branches
from smoothcache.zoo.demo import DEMO_MODELS, FIDELITY, calibrate_pipeline

from .common import BENCHMARKS, RESULTS, machine, rank_agreement, rank_line, write_section
from .methods import Method
from .quality import time_methods

#: What a reader must know to read a model's table.
NOTES = {
    "audio": "The decoder reconstructs phase with Griffin-Lim, so small changes of the spectrogram give "
    "other phases: the waveform SNR against no cache is near 0 dB for every method and says little; the "
    "log-spectral distance is the fidelity figure to read. With this SDE sampler, fewer steps score a "
    "*better* FID than 100 steps (see the model card), so FID differences here do not rank methods.",
    "video": "A weak generator (FID far above the real-data floor): FID moves by a few percent between "
    "seeds; PSNR / SSIM against no cache are the paired figures.",
}
SETTINGS = {
    "digits": "DDIM, 50 steps (the image model; bench/quality.py is its full benchmark)",
    "audio": "Stable Audio Open's sampler: DPM-Solver++(3M) SDE, 100 steps",
    "video": "Open-Sora's sampler: rectified flow (Euler), 30 steps",
}
GREEDY_SPEEDUPS = (1.5, 2.0)
#: The recommended mode: ``Schedule.for_budget``'s defaults (linear forecasts, or reuse for a sampler that
#: draws fresh noise at each step; planned in the wall time the calibration measured, runs of blocks fused).
RECOMMENDED = "SmoothCache recommended (planned in time, fused runs)"
#: Each skip run its predictor of least calibrated error (``predictor="auto"``).
AUTO = "SmoothCache per-run predictor (auto, planned in time, fused runs)"
OPTIMAL_SPEEDUPS = (1.5, 2.0, 2.5, 3.0)
#: Evaluator metrics shown besides FID, with their column titles.
EVALUATOR_COLUMNS = {
    "class_consistency": "class consistency",
    "motion_consistency": "motion consistency",
    "precision": "precision",
    "recall": "recall",
}
TAYLOR_POINTS = ((2, 3), (3, 5))  # (cache interval, warm-up steps at 50 steps; scaled to the step count)


class Bench:
    """One embedded model: its pipeline, evaluator, calibration, MACs and how it generates."""

    def __init__(self, model: str, calibration_runs: int = 2, calibration_batch: int = 10):
        self.spec = DEMO_MODELS[model]
        self.pipe = self.spec.load("pipeline")()
        self.pipe.set_progress_bar_config(disable=True)
        self.evaluator = self.spec.load("evaluator")()
        self.fidelity = self.spec.load("fidelity")
        self.steps = self.spec.steps
        self.extra = {} if self.spec.guidance is None else {"guidance_scale": self.spec.guidance}
        # calibrated at the batch that is timed: a plan in wall time holds for the batch it was timed at
        self.calibration_batch = calibration_batch
        self.profile = calibrate_pipeline(
            self.pipe,
            self.steps,
            classes=[i % 10 for i in range(calibration_batch)],
            runs=calibration_runs,
            guidance_scale=self.spec.guidance,
        )
        self.report = MacReport.from_profile(self.profile)
        self.keys = sorted({b.key for b in self.profile.errors.values()})
        self.branches = find_branches(self.pipe.transformer)  # found once, outside any peer's hooks

    def generate(self, pipe, method: Method, labels: list[int], seed: int) -> torch.Tensor:
        with method.context():
            out = pipe(
                class_labels=labels,
                num_inference_steps=method.steps,
                generator=torch.manual_seed(seed),
                output_type="pt",
                **self.extra,
            )
        return getattr(out, self.spec.output)

    def cached(self, schedule: Schedule, fuse: bool = False):
        return lambda: SmoothCache(self.pipe.transformer, schedule, fuse_blocks=fuse)

    def executed_speedup(self, make_context) -> float:
        """Theoretical speed-up of a peer: the MACs of the branch calls it really ran over one generation.

        ``make_context(pipe)`` installs the peer on ``pipe``. The count runs on a second copy of the pipeline,
        so that the timed one never carries counting hooks.
        """
        if getattr(self, "_counting", None) is None:
            pipe = self.spec.load("pipeline")()
            pipe.set_progress_bar_config(disable=True)
            self._counting = (pipe, find_branches(pipe.transformer))
        pipe, branches = self._counting
        rows: dict[str, int] = {}

        def run(ctx) -> dict[str, int]:
            rows.clear()
            handles = []
            with ctx:
                for b in branches:
                    first = next(m for m in b.module.modules() if isinstance(m, torch.nn.Linear))
                    handles.append(
                        first.register_forward_pre_hook(
                            lambda mod, args, p=b.path: rows.__setitem__(p, rows.get(p, 0) + args[0].shape[0])
                        )
                    )
                try:
                    self.generate(pipe, Method("count", "", "", self.steps, 1.0), list(range(10)), 0)
                finally:
                    for h in handles:
                        h.remove()
            return dict(rows)

        full, ran = run(contextlib.nullcontext()), run(make_context(pipe))
        saved = sum(
            macs * (1 - ran.get(p, 0) / full[p]) for p, macs in self.report.branch_macs.items() if full.get(p)
        )
        return self.report.total / (self.report.total - saved)


def build(bench: Bench) -> tuple[list[Method], dict[str, str]]:
    """The methods for ``bench``'s model, no cache first, and ``{what: why}`` for those left out."""
    steps, report, skipped = bench.steps, bench.report, {}
    methods = [Method("no cache", "no cache", "reference", steps, 1.0)]
    for fraction in (0.5, 0.33):
        k = max(2, round(steps * fraction))
        methods.append(Method(f"{k} steps", "fewer steps", "baseline", k, steps / k))
    for predictor, family, kind in (
        ("reuse", "FORA (reuse every N)", "baseline"),
        ("linear", "SmoothCache every-N forecast", "smoothcache"),
    ):
        for n in (2, 3):
            schedule = Schedule.fixed_interval(steps, n, bench.keys, predictor=predictor)
            label = "FORA" if predictor == "reuse" else "every-N forecast"
            methods.append(
                Method(
                    f"{label} N={n}",
                    family,
                    kind,
                    steps,
                    report.speedup(schedule, "macs", False),
                    bench.cached(schedule),
                    {"interval": n, "predictor": predictor},
                )
            )
    planned = (
        ("SmoothCache greedy reuse", "reuse", "greedy", GREEDY_SPEEDUPS, False, "macs"),
        ("SmoothCache optimal reuse", "reuse", "optimal", OPTIMAL_SPEEDUPS, False, "macs"),
        ("SmoothCache optimal forecast", "linear", "optimal", OPTIMAL_SPEEDUPS, False, "macs"),
        ("SmoothCache optimal forecast, fused blocks", "linear", "optimal", OPTIMAL_SPEEDUPS, True, "macs"),
        (RECOMMENDED, None, "optimal", OPTIMAL_SPEEDUPS, True, "time"),
        (AUTO, "auto", "optimal", OPTIMAL_SPEEDUPS, True, "time"),
    )
    for family, predictor, planner, targets, fuse, cost in planned:
        for target in targets:
            name = f"{family} {target:g}x"
            try:
                schedule = Schedule.for_budget(
                    bench.profile,
                    speedup=target,
                    predictor=predictor,
                    planner=planner,
                    cost=cost,
                    fuse_blocks=fuse,
                )
            except ScheduleError as err:
                skipped[name] = str(err)
                continue
            info = {
                "target_speedup": target,
                "predictor": predictor or schedule.predictor,
                "planner": planner,
                "fused": fuse,
                "cost": cost,
                **{
                    k: schedule.metadata[k]
                    for k in ("alpha", "planned_error", "predictors")
                    if k in schedule.metadata
                },
            }
            methods.append(
                Method(
                    name,
                    family,
                    "smoothcache",
                    steps,
                    report.speedup(schedule, "macs", fuse),
                    bench.cached(schedule, fuse),
                    info,
                )
            )
    methods += _taylorseer(bench, skipped)
    return methods, skipped


@contextlib.contextmanager
def taylorseer(pipe, config: dict, identifiers: list[str]):
    """diffusers' TaylorSeer on ``pipe.transformer``, fresh for each generation.

    The documented way where the model has it (``enable_cache`` + a ``cache_context``, then
    ``disable_cache``): the digits benchmark's hook session loses its cache context on the Latte model after
    two sessions. Models without ``CacheMixin`` (``StableAudioDiTModel``) get ``apply_taylorseer_cache``
    through that hook session, which supplies the context and restores the model exactly.
    """
    from diffusers.hooks import TaylorSeerCacheConfig

    transformer = pipe.transformer
    if not hasattr(transformer, "enable_cache"):
        from .peers.installers import install_taylor
        from .peers.session import HookSession

        with HookSession(pipe, install_taylor(config, identifiers)):
            yield
        return
    transformer.enable_cache(
        TaylorSeerCacheConfig(**config, taylor_factors_dtype=torch.float32, cache_identifiers=identifiers)
    )
    try:
        with transformer.cache_context("generation"):
            yield
    finally:
        transformer.disable_cache()


def _taylorseer(bench: Bench, skipped: dict) -> list[Method]:
    identifiers = [re.escape(b.path) for b in bench.branches]
    out = []
    for interval, warmup50 in TAYLOR_POINTS:
        warmup = max(1, round(warmup50 * bench.steps / 50))
        name = f"TaylorSeer N={interval} O=1 warmup={warmup}"
        config = {"cache_interval": interval, "disable_cache_before_step": warmup, "max_order": 1}
        def make(pipe, c=config):
            return taylorseer(pipe, c, identifiers)

        try:
            theoretical = bench.executed_speedup(make)
        except Exception as err:  # noqa: BLE001  a peer that cannot run here is reported, not hidden
            skipped[name] = f"{type(err).__name__}: {err}"
            continue
        out.append(
            Method(
                name,
                "diffusers TaylorSeer",
                "peer",
                bench.steps,
                theoretical,
                lambda m=make: m(bench.pipe),
                {"config": config},
            )
        )
    return out


def probe(bench: Bench, methods: list[Method], skipped: dict) -> list[Method]:
    """The methods that run a short generation (2 samples) without error; the others go to ``skipped``."""
    kept = []
    for m in methods:
        try:
            bench.generate(bench.pipe, m, [0, 1], 0)
            bench.generate(bench.pipe, m, [2, 3], 1)  # a second generation: state carried across runs
        except Exception as err:  # noqa: BLE001  a method that fails is reported verbatim, not hidden
            skipped[m.name] = f"{type(err).__name__}: {err}"
        else:
            kept.append(m)
    return kept


def evaluate(bench: Bench, methods: list[Method], speedups: dict, samples: int, batch: int, say) -> dict:
    """Per method: the same seeds' samples, the evaluator's metrics and the fidelity to no cache."""
    rows, reference = {}, None
    labels = [i % 10 for i in range(batch)]
    for m in methods:
        start = time.perf_counter()
        row = m.row(speedups)
        out = torch.cat(
            [bench.generate(bench.pipe, m, labels, seed) for seed in range(max(1, samples // batch))]
        )
        row.update(bench.evaluator.evaluate(out, [i % 10 for i in range(out.shape[0])]))
        if reference is None:
            reference = out
        else:
            row.update(bench.fidelity(reference, out))
        rows[m.name] = row
        say(
            f"{m.name:<40} {row['measured']:.2f}x  FID {row['fid']:.3f}  "
            + "  ".join(f"{k} {row[k]:.2f}" for k in FIDELITY if k in row)
            + f"  ({time.perf_counter() - start:.0f}s)"
        )
    return rows


def _cell(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    return FIDELITY[key][1].format(row[key]) if key in FIDELITY else f"{row[key]:.3f}"


def report(results: dict) -> str:
    """The BENCHMARKS.md section: one table per model, then what the table says."""
    lines = [
        "## Audio and video: the paper's settings in miniature (`bench/modality.py`)",
        "",
        "The paper's Tables 2 (Stable Audio Open) and 3 (Open-Sora) on the audio and video DiTs trained here "
        "(model cards: `src/smoothcache/zoo/audio/README.md`, `src/smoothcache/zoo/video/README.md`). Every "
        "method generates the same seeds; fidelity columns compare with the no-cache samples of those seeds. "
        "Measured speed-up: median of interleaved timing rounds in one process (no cache timed around each "
        "method); theoretical: MAC ratio (for TaylorSeer, of the branch calls it really ran).",
    ]
    for model, res in results.items():
        rows = res["methods"]
        fid_keys = [k for k in FIDELITY if any(k in r for r in rows.values())]
        extra = [k for k in EVALUATOR_COLUMNS if any(k in r for r in rows.values())]
        lines += [
            "",
            f"### {model}: {SETTINGS[model]}",
            "",
            f"{res['samples']} samples per method (10 classes in turn, seeds 0..), guidance "
            f"{res['guidance']}; timing: {res['rounds']} round(s) of {res['timing_samples']}-sample "
            f"generations on {res['machine']}"
            + (
                f"; calibrated on {res['calibration_runs']} {res['calibration_batch']}-sample generations"
                if "calibration_batch" in res
                else ""
            )
            + "; real-data floor FID "
            f"{'-' if res['floor'] is None else format(res['floor'], '.3f')}.",
            "",
            "| method | steps | theoretical | measured | FID | "
            + " | ".join(EVALUATOR_COLUMNS[k] for k in extra)
            + " | "
            + " | ".join(FIDELITY[k][0] for k in fid_keys)
            + " |",
            "|" + " --- |" * (5 + len(extra) + len(fid_keys)),
        ]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {r['steps']} | {r['theoretical']:.2f}x | {r['measured']:.2f}x | {r['fid']:.3f} "
                "| "
                + " | ".join(_cell(r, k) for k in extra)
                + (" | " if extra else "")
                + " | ".join(_cell(r, k) for k in fid_keys)
                + " |"
            )
        figure = "lsd_db" if model == "audio" else "psnr_db"
        agreement = rank_agreement(rows, figure, higher_is_better=figure != "lsd_db")
        if agreement:
            lines += ["", rank_line(agreement, FIDELITY[figure][0].replace(" vs no cache", ""))]
        if model in NOTES:
            lines += ["", NOTES[model]]
        for what, why in res.get("skipped", {}).items():
            lines.append(f"\nLeft out {what}: {why}")
    return "\n".join(lines)


def _floor(evaluator) -> float | None:
    """FID of real held-out data against the reference statistics, when the evaluator knows it."""
    floor = getattr(evaluator, "real_floor", None)
    return None if floor is None else floor()["fid"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", default=["audio", "video"], choices=list(SETTINGS))
    parser.add_argument("--samples", type=int, default=200, help="samples per method for the metrics")
    parser.add_argument("--batch", type=int, default=50, help="samples per seeded generation")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument("--timing-samples", type=int, default=20, help="samples per timed generation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--report", action="store_true", help="no generation: rebuild the section from OUT")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="re-time the methods saved in OUT (on a quiet machine); metrics are kept",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out / "modality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for model in [] if args.report else args.model:
        say = lambda line, m=model: print(f"[{model}] {line}", flush=True)  # noqa: E731
        started = time.perf_counter()
        bench = Bench(model, calibration_batch=args.timing_samples)
        methods, skipped = build(bench)
        if args.timing_only:  # re-time the saved methods on a quiet machine; their metrics stay
            methods = [m for m in methods if m.name in results[model]["methods"]]
        else:
            methods = probe(bench, methods, skipped)
        say(f"{len(methods)} methods; left out: {skipped or 'none'}")
        _, speedups = time_methods(
            bench.pipe, methods, args.timing_samples, args.rounds, say, generate=bench.generate
        )
        if args.timing_only:
            saved = results[model]
            for m in methods:
                saved["methods"][m.name].update(
                    measured=statistics.median(speedups[m.name]), speedups=speedups[m.name]
                )
            saved.update(
                rounds=args.rounds,
                timing_samples=args.timing_samples,
                machine=machine(),
                retimed=time.strftime("%Y-%m-%d %H:%M"),
            )
            continue
        rows = evaluate(bench, methods, speedups, args.samples, args.batch, say)
        results[model] = {
            "samples": max(1, args.samples // args.batch) * args.batch,
            "guidance": bench.spec.guidance,
            "rounds": args.rounds,
            "timing_samples": args.timing_samples,
            "calibration_batch": bench.calibration_batch,
            "calibration_runs": bench.profile.runs,
            "machine": machine(),
            "floor": _floor(bench.evaluator),
            "methods": rows,
            "skipped": skipped,
            "minutes": (time.perf_counter() - started) / 60,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        say(f"done in {results[model]['minutes']:.1f} min")
    benchmarks = BENCHMARKS if args.out.resolve() == RESULTS.resolve() else args.out / "BENCHMARKS.md"
    if results:
        write_section("modality", report(results), results, results_dir=args.out, benchmarks=benchmarks)
        print(f"report: {benchmarks}")


if __name__ == "__main__":
    main()
