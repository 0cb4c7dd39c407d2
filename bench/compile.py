"""torch.compile benchmark: compiled + cached vs compiled vs eager + cached vs eager, as ratios in one
process.

Models: the DiT-S/2-size random-weight diffusers DiT of ``bench.overhead`` (batched CFG, 50 DDIM steps,
the reference 50-N-2-fora schedule on attn1 + ff) and the embedded digits DiT (its calibrated schedule at
the demo's alpha). Compilation is regional (``smoothcache.compile_repeated_blocks``, inductor); warm-up
generations are excluded from the timings and counted separately; after warm-up every recompile raises.

    python -m bench.compile [--repeats 5] [--skip-digits]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import time

import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from smoothcache import Schedule, SmoothCache, compile_repeated_blocks

from .common import machine, write_section
from .models import dit_s2_pipeline
from .overhead import reference_schedule

#: Threshold of the digits schedule (the greedy scan, as in earlier runs of this benchmark).
DIGITS_ALPHA = 0.08


def _variants(pipe, schedule):
    """Four pipelines sharing weights: eager / compiled transformer, each with and without the cache."""
    compiled = copy.copy(pipe)
    compiled_transformer = copy.deepcopy(pipe.transformer)
    compile_repeated_blocks(compiled_transformer)
    compiled.transformer = compiled_transformer
    return {
        "eager": (pipe, None),
        "eager + cache": (pipe, schedule),
        "compiled": (compiled, None),
        "compiled + cache": (compiled, schedule),
    }


def measure(name, pipe, schedule, generate, repeats):
    """Warm up, then time the four variants interleaved; recompiles after warm-up raise."""
    dynamo.reset()
    counters.clear()
    variants = _variants(pipe, schedule)

    def timed(p, s) -> float:
        start = time.perf_counter()
        with (SmoothCache(p.transformer, s) if s is not None else contextlib.nullcontext()):
            generate(p)
        return time.perf_counter() - start

    # warm-up: compiles the graphs (whole blocks without the cache, split at the branches with it)
    warm = {label: timed(p, s) for label, (p, s) in variants.items()}
    graphs = counters["stats"]["unique_graphs"]
    dynamo.config.error_on_recompile = True
    times = {label: [] for label in variants}
    try:
        for r in range(repeats):
            for label, (p, s) in variants.items():
                times[label].append(timed(p, s))
                print(f"{name} repeat {r + 1}/{repeats} {label:<18} {times[label][-1]:.2f}s", flush=True)
    finally:
        dynamo.config.error_on_recompile = False
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "times": times, "warmup_seconds": warm, "graphs_after_warmup": graphs,
        "graphs_after_timing": counters["stats"]["unique_graphs"], "recompiles_after_warmup": 0,
        "ratios": {
            "eager + cache vs eager": med["eager"] / med["eager + cache"],
            "compiled vs eager": med["eager"] / med["compiled"],
            "compiled + cache vs compiled": med["compiled"] / med["compiled + cache"],
            "compiled + cache vs eager": med["eager"] / med["compiled + cache"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 on a shared machine: idle threads spin against other work)",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    results = {"machine": machine(), "repeats": args.repeats, "models": {}}

    pipe = dit_s2_pipeline(12)
    schedule = reference_schedule("50-N-2-fora", pipe.transformer)

    def gen(p):
        seed = torch.manual_seed(0)
        return p(class_labels=[0, 1], num_inference_steps=50, generator=seed, output_type="np")

    results["models"]["DiT-S/2 (random weights), batch 2 + CFG, DDIM 50, 50-N-2-fora"] = measure(
        "dit-s2", pipe, schedule, gen, args.repeats
    )

    if not args.skip_digits:
        from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_pipeline
        from smoothcache.zoo.demo import calibrate_pipeline

        digits = digits_pipeline()
        profile = calibrate_pipeline(digits, 50, guidance_scale=DIGITS_GUIDANCE_SCALE)
        digit_schedule = Schedule.from_profile(profile, DIGITS_ALPHA)
        labels = [i % 10 for i in range(100)]
        def gen(p):
            return p(
                class_labels=labels,
                num_inference_steps=50,
                guidance_scale=DIGITS_GUIDANCE_SCALE,
                generator=torch.manual_seed(0),
                output_type="np",
            )

        cfg = "CFG" if DIGITS_GUIDANCE_SCALE > 1 else "no CFG (guidance 1.0)"
        results["models"][f"digits DiT, 100 images, {cfg}, DDIM 50, alpha {DIGITS_ALPHA}"] = measure(
            "digits", digits, digit_schedule, gen, args.repeats
        )

    rows = []
    for model, r in results["models"].items():
        q = r["ratios"]
        rows.append(
            f"| {model} | {q['eager + cache vs eager']:.2f}x | {q['compiled vs eager']:.2f}x | "
            f"{q['compiled + cache vs compiled']:.2f}x | {q['compiled + cache vs eager']:.2f}x | "
            f"{r['graphs_after_warmup']} -> {r['graphs_after_timing']} | "
            f"{r['warmup_seconds']['compiled + cache']:.0f}s |"
        )
    columns = ["model / setting", "eager + cache vs eager", "compiled vs eager",
               "compiled + cache vs compiled", "compiled + cache vs eager",
               "unique graphs (after warm-up -> after timing)",
               "first compiled + cache generation"]
    header = "| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns)
    md = f"""## torch.compile (`python -m bench.compile`)

Regional compilation (`smoothcache.compile_repeated_blocks`: every block and every cacheable branch compiled
in place with inductor; smoothcache's wrappers stay out of the graphs, so a compiled block breaks its graph at
each wrapped branch). Median of {args.repeats} interleaved repeats per variant in one process on
{results["machine"]}; warm-up generations (compilation) excluded. After warm-up
`torch._dynamo.config.error_on_recompile = True`: any recompile during the timed runs would have aborted
the benchmark, so the timed runs had 0 recompiles.

{header}
{chr(10).join(rows)}
"""
    write_section("compile", md, results)
    print(md)


if __name__ == "__main__":
    main()
