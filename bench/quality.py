"""Quality benchmark on the embedded digits DiT: measured speed-up against Digits-FID, PSNR and SSIM, per
method.

Settings: DDIM 50, 30 and 70 steps and DPM-Solver++ 20, at the model's guidance scale. Methods
    (bench/methods.py):
no cache, fewer steps, FORA, every-N forecast, SmoothCache greedy / optimal planner with reuse / linear
forecast over a speed-up sweep, diffusers' TaylorSeer, FirstBlockCache and MagCache, cache-dit's DBCache with
and without its TaylorSeer calibrator. Every method generates the same seeds (batches of 100, 10 per class);
Digits-FID, precision / recall and class consistency from the digits evaluator; PSNR and SSIM against the
no-cache samples. Measured speed-up: median over interleaved timing rounds in this process (every method once
per round, order rotated) of its time against the no-cache time interpolated between no-cache runs placed
around it. Results are saved per setting (``quality_<setting>.json``); a later run with other ``--methods``
merges into the same file (same sample counts required), and ``--report`` rebuilds the BENCHMARKS.md section
and the Pareto plots from the saved files.

    python -m bench.quality                                   # everything (hours on 2 cores)
    python -m bench.quality --settings ddim50 --methods no-cache greedy-forecast taylorseer
    python -m bench.quality --samples 100 --rounds 1 --out /tmp/smoke    # a smoke run outside bench/results
    python -m bench.quality --report                          # tables and plots from bench/results
    torchrun --standalone --nproc_per_node=2 -m bench.quality # samples generated data-parallel
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from smoothcache import MacReport, distributed
from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_evaluator, digits_pipeline
from smoothcache.zoo.demo import calibrate_pipeline

from .common import BENCHMARKS, RESULTS, machine
from .methods import DEFAULT_GROUPS, GROUPS, SPEEDUPS, TIME_GROUPS, Method, Setting, build_methods

SETTINGS = {"ddim50": ("ddim", 50), "ddim30": ("ddim", 30), "ddim70": ("ddim", 70), "dpm20": ("dpm", 20)}
BATCH = 100  # samples per seeded generation (10 per class)


def generate(pipe, method: Method, labels: list[int], seed: int) -> torch.Tensor:
    with method.context():
        return pipe(
            class_labels=labels,
            num_inference_steps=method.steps,
            guidance_scale=DIGITS_GUIDANCE_SCALE,
            generator=torch.manual_seed(seed),
            output_type="pt",
        ).images


def time_methods(
    pipe,
    methods: list[Method],
    samples: int,
    rounds: int,
    say=print,
    every: int = 4,
    clock=time.perf_counter,
    generate=generate,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per generation of ``samples`` samples and speed-ups against no cache, ``rounds`` rounds.

    In each round every method runs once (order rotated between rounds), with the reference (``methods[0]``,
    no cache) run before the first method, after every ``every`` methods and at the end. A method's speed-up
    in a round is the reference time interpolated at its position over its own time, so load that drifts
    during a round (other work on a shared machine) cancels out instead of favouring whoever ran when it was
    quiet. ``generate(pipe, method, labels, seed)`` makes one generation (default: the digits model's).
    Returns ``(seconds, speed-ups)`` per method name.
    """
    labels = [i % 10 for i in range(samples)]
    reference, others = methods[0], methods[1:]
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    ratios: dict[str, list[float]] = {m.name: [] for m in methods}

    def run(m: Method) -> float:
        start = clock()
        generate(pipe, m, labels, 0)
        return clock() - start

    run(reference)  # warm-up
    for r in range(rounds):
        shift = r % max(1, len(others))
        refs, timed = [], []  # (position, seconds), (position, method, seconds)
        for i, m in enumerate(others[shift:] + others[:shift]):
            if i % every == 0:
                refs.append((len(refs) + len(timed), run(reference)))
            timed.append((len(refs) + len(timed), m, run(m)))
        refs.append((len(refs) + len(timed), run(reference)))
        positions, seconds = zip(*refs)
        times[reference.name] += list(seconds)
        ratios[reference.name].append(1.0)
        for position, m, t in timed:
            times[m.name].append(t)
            ratios[m.name].append(float(np.interp(position, positions, seconds)) / t)
        say(f"timing round {r + 1}/{rounds} done")
    return times, ratios


def evaluate(
    pipe, methods: list[Method], times: dict, speedups: dict, samples: int, evaluator, say
) -> dict[str, dict]:
    """Per method: samples from fixed seeds, metrics, PSNR / SSIM against the first method (no cache)."""
    from smoothcache.zoo.metrics import psnr, ssim

    batch = min(BATCH, samples)
    seeds = distributed.shard(list(range(math.ceil(samples / batch))))
    labels = [i % 10 for i in range(batch)]
    rows, reference = {}, None
    for m in methods:
        start = time.perf_counter()
        row = {**m.row(speedups), "seconds": times[m.name]}
        try:
            local = [generate(pipe, m, labels, seed) for seed in seeds]
            images = distributed.gather(torch.cat(local) if local else torch.empty(0, 1, 16, 16))[:samples]
        except Exception as err:  # noqa: BLE001  a method that fails is recorded verbatim, not hidden
            row["error"] = f"{type(err).__name__}: {err}"
        else:
            row.update(evaluator.evaluate(images, [i % 10 for i in range(images.shape[0])]))
            if reference is None:
                reference = images
            else:
                row["psnr"], row["ssim"] = psnr(images, reference), ssim(images, reference)
        rows[m.name] = row
        quality = (
            f"FID {row['fid']:.3f}" + (f"  PSNR {row['psnr']:.1f} dB" if "psnr" in row else "")
            if "fid" in row
            else row["error"]
        )
        say(f"{m.name:<52} {row['measured']:.2f}x  {quality}  ({time.perf_counter() - start:.0f}s)")
    return rows


def run_setting(key: str, args, evaluator, profile50) -> tuple[dict, object]:
    """Calibrate, build, time and evaluate one setting; returns its results and its calibration profile."""
    scheduler, steps = SETTINGS[key]
    say = (
        (lambda line: print(f"[{key}] {line}", flush=True))
        if distributed.rank() == 0
        else (lambda line: None)
    )
    started = time.perf_counter()
    pipe = digits_pipeline(scheduler=scheduler)
    profile = calibrate_pipeline(pipe, steps, runs=2, guidance_scale=DIGITS_GUIDANCE_SCALE)
    time_profile = None
    if set(args.methods) & TIME_GROUPS:  # a plan in wall time holds for the batch it was timed at
        time_profile = calibrate_pipeline(
            pipe,
            steps,
            classes=[i % 10 for i in range(args.timing_samples)],
            runs=2,
            guidance_scale=DIGITS_GUIDANCE_SCALE,
        )
        say(f"calibrated the groups planned in wall time at the timed batch ({args.timing_samples} samples)")
    setting = Setting(
        pipe,
        steps,
        DIGITS_GUIDANCE_SCALE,
        profile,
        MacReport.from_profile(profile),
        profile50,
        args.speedups,
        time_profile=time_profile,
    )
    methods, skipped = build_methods(setting, args.methods)
    for what, why in skipped.items():
        say(f"left out {what}: {why}")
    say(f"{len(methods)} methods; timing {args.rounds} round(s) of {args.timing_samples} samples")
    if args.timing_only:  # re-time the saved methods on a quiet machine; their samples and metrics stay
        saved = json.loads((args.out / f"quality_{key}.json").read_text())["methods"]
        methods = [m for m in methods if m.name in saved]
    times, speedups = time_methods(pipe, methods, args.timing_samples, args.rounds, say)
    if args.timing_only:
        rows = {
            m.name: {
                **saved[m.name],
                "measured": statistics.median(speedups[m.name]),
                "speedups": speedups[m.name],
                "seconds": times[m.name],
            }
            for m in methods
        }
        return {
            "scheduler": scheduler,
            "steps": steps,
            "methods": rows,
            "timing_samples": args.timing_samples,
            "runs": [
                {
                    "machine": machine(),
                    "rounds": args.rounds,
                    "timing_only": True,
                    "groups": list(args.methods),
                    "seconds": time.perf_counter() - started,
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                }
            ],
        }, profile
    rows = evaluate(pipe, methods, times, speedups, args.samples, evaluator, say)
    result = {
        "scheduler": scheduler,
        "steps": steps,
        "samples": args.samples,
        "timing_samples": args.timing_samples,
        "methods": rows,
        "skipped": skipped,
        "runs": [
            {
                "machine": machine(),
                "rounds": args.rounds,
                "world_size": distributed.world_size(),
                "groups": list(args.methods),
                "seconds": time.perf_counter() - started,
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
        ],
    }
    say(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    return result, profile


def merge(path: Path, new: dict, fresh: bool) -> dict:
    """``new`` merged into the saved results at ``path``: its rows replace rows of the same name."""
    if new["runs"][0].get("timing_only"):
        old = json.loads(path.read_text())
        old["methods"].update(new["methods"])
        old["timing_samples"] = new["timing_samples"]
        old["runs"].append(new["runs"][0])
        return old
    if fresh or not path.exists():
        for row in new["methods"].values():
            row["run"] = 0
        return new
    old = json.loads(path.read_text())
    for k in ("scheduler", "steps", "samples", "timing_samples"):
        if old.get(k) != new[k]:
            raise SystemExit(
                f"{path} holds a run with {k}={old.get(k)!r}, this run has {new[k]!r}: "
                "use the same sample counts, another --out, or --fresh to start over"
            )
    run = len(old["runs"])
    for name, row in new["methods"].items():
        old["methods"][name] = {**row, "run": run}
    old["skipped"] = {
        k: v for k, v in {**old.get("skipped", {}), **new["skipped"]}.items() if k not in old["methods"]
    }
    old["runs"].append(new["runs"][0])
    return old


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_GROUPS),
        choices=list(GROUPS),
        metavar="GROUP",
        help=f"method groups (default: {' '.join(DEFAULT_GROUPS)}); all: {' '.join(GROUPS)}",
    )
    parser.add_argument("--samples", type=int, default=1000, help="samples per method for the metrics")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--timing-samples", type=int, default=100, help="samples per timed generation")
    parser.add_argument(
        "--speedups",
        type=float,
        nargs="+",
        default=list(SPEEDUPS),
        help="theoretical speed-ups the planned schedules aim at",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (1 on a shared machine: idle threads spin against other work)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="results folder (default bench/results; elsewhere the report goes to OUT/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="replace a setting's saved results instead of merging"
    )
    parser.add_argument("--report", action="store_true", help="no generation: rebuild the report from OUT")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="re-time the methods saved in OUT (on a quiet machine); metrics are kept",
    )
    args = parser.parse_args()
    args.methods = list(dict.fromkeys(["no-cache", *args.methods]))
    benchmarks = BENCHMARKS if args.out.resolve() == RESULTS.resolve() else args.out / "BENCHMARKS.md"
    distributed.init()
    torch.set_num_threads(max(1, min(args.threads, (os.cpu_count() or 1) // distributed.world_size())))

    evaluator = None if args.report else digits_evaluator()
    profile50 = None
    for key in [] if args.report else args.settings:
        if "resampled" in args.methods and SETTINGS[key] != ("ddim", 50) and profile50 is None:
            profile50 = calibrate_pipeline(
                digits_pipeline(), 50, runs=2, guidance_scale=DIGITS_GUIDANCE_SCALE
            )
        result, profile = run_setting(key, args, evaluator, profile50)
        if key == "ddim50":
            profile50 = profile
        if distributed.rank() == 0:
            result["floor"] = evaluator.real_floor()["fid"]
            path = args.out / f"quality_{key}.json"
            merged = merge(path, result, args.fresh)
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(merged, indent=2) + "\n")
    if distributed.rank() == 0:
        from .quality_report import write_report

        results = {
            k: json.loads((args.out / f"quality_{k}.json").read_text())
            for k in SETTINGS
            if (args.out / f"quality_{k}.json").exists()
        }
        if results:
            write_report(results, args.out, benchmarks)
            print(f"report: {benchmarks}, plots: {args.out / 'pareto.png'}")
    distributed.finish()


if __name__ == "__main__":
    main()
