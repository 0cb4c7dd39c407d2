"""Check a ``smoothcache tune`` report on inputs it never saw: re-run its chosen ``schedule.json`` on new
seeds of the same model and compare the fidelity figure with the report's.

    python scripts/check_tune.py report/ [--held-out N] [--tolerance DB] [--threads N]

The new generations use the report's held-out arguments (classes, guidance, steps, sampler) with seeds above
every seed the report used, uncached and cached in turn. Exit status 0 when the mean figure (PSNR for images
and video, log-spectral distance for audio) is within the tolerance of the report's, 1 when not, 2 for a
report that cannot be checked (no chosen schedule, written by the Python API without a model name).

Tolerances: PSNR 1.5 dB (the issue's). Log-spectral distance: 0.5 dB. On the shipped audio model the per-clip
distance spreads by 0.2-0.35 dB (standard deviation over the held-out clips, ``lsd_db_std`` in report.json) at
the budgets a 2-2.5 dB target picks, so the means of two sets of 20 clips differ by about 0.1 dB (one standard
deviation): 0.5 dB is four of them, and about the step between neighbouring budgets of the sweep (0.2-1 dB),
so a schedule that moves further measures like another budget.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

#: How far the new figure may be from the report's, per figure (dB).
TOLERANCE = {"psnr_db": 1.5, "lsd_db": 0.5}


def _fail(message: str) -> int:
    print(f"check_tune: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="a folder written by smoothcache tune")
    parser.add_argument("--held-out", type=int, default=None, help="new generations (default: the report's)")
    parser.add_argument("--tolerance", type=float, default=None, help="allowed difference (default: above)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    folder = Path(args.report)
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return _fail(f"cannot read {folder / 'report.json'}: {err}")
    if report.get("chosen") is None or not (folder / "schedule.json").is_file():
        return _fail(f"{folder} chose no schedule (no target was given, or no budget met it)")
    info = report["info"]
    command = info.get("command")
    if not command:
        return _fail(f"{folder} was written by the Python API: it names no model to reload")
    figure = report["main_figure"]
    row = next(r for r in report["table"] if r["speedup"] == report["chosen"]["speedup"])
    reported = row[figure]
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE.get(figure, 1.5)

    import torch

    from smoothcache import Schedule, SmoothCache
    from smoothcache.cli.pipelines import load_pipeline
    from smoothcache.fidelity import MEASURES, measure

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(command["model"], command["device"], command["dtype"], command["scheduler"])
    schedule = Schedule.load(folder / "schedule.json")
    held = info["held_out"]
    first = max(g["seed"] for g in info["calibration"] + held) + 1
    count = args.held_out or len(held)
    values, ratios = [], []
    cache = SmoothCache(pipe.transformer, schedule)

    def generate(arguments: dict, seed: int, cached: bool):
        call = dict(arguments, num_inference_steps=info["steps"], output_type="np")
        start = time.perf_counter()
        with cache if cached else contextlib.nullcontext():
            result = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed))
        return result, time.perf_counter() - start

    for j in range(count):
        arguments, seed = held[j % len(held)]["arguments"], first + j
        order = (False, True) if j % 2 == 0 else (True, False)
        runs = {cached: generate(arguments, seed, cached) for cached in order}
        (uncached, t_uncached), (cached, t_cached) = runs[False], runs[True]
        values.append(measure(uncached, cached, reduction="none")[figure].reshape(-1).double())
        ratios.append(t_uncached / t_cached)
    new = float(torch.cat(values).mean())
    name, unit, _ = MEASURES[figure]
    budget = report["chosen"]["speedup"]
    print(f"{folder}: schedule.json ({budget:.2f}x budget) on {count} new generation(s), seeds "
          f"{first}-{first + count - 1}")
    print(f"  {name}: report {reported:.2f} {unit}, new inputs {new:.2f} {unit}, difference "
          f"{new - reported:+.2f} {unit} (tolerance {tolerance:g} {unit})")
    ratios.sort()
    median = ratios[len(ratios) // 2]
    print(f"  measured speed-up: report {row['measured_speedup']:.2f}x, new inputs {median:.2f}x")
    if abs(new - reported) > tolerance:
        print(f"  FAIL: the figure moved by more than {tolerance:g} {unit}")
        return 1
    print("  OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
