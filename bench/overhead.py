"""Overhead benchmark: measured wall-clock speed-up of SmoothCache against its theoretical (MAC) speed-up.

Setup (issue 2): a DiT-S/2-size diffusers DiT with random weights (12 layers, hidden 384, 6 heads,
32x32x4 latent, patch 2), classifier-free guidance (batched), 50 DDIM steps, the original implementation's
published 50-step schedules applied to attn1 + ff. Variants run interleaved in one process, with repeats;
speed-ups are ratios of median times. Where the original package (``pip install dit-smoothcache``) is
installed, the same schedules run through it side by side (its per-call prints go to /dev/null).

    python bench/overhead.py [--repeats 3] [--batch 2] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, write_section  # noqa: E402

from smoothcache import Schedule, SmoothCache, count_macs, find_branches  # noqa: E402

REFERENCE = Path(os.environ.get("SMOOTHCACHE_REFERENCE_SCHEDULES", ROOT.parent / "shared" / "reference_schedules"))
NAMES = ["50-N-2-fora", "50-N-3-threshold-0.08", "50-N-3-threshold-0.18", "50-N-2-l2c", "diffuser_schedule"]


def build_pipeline(layers: int, seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(num_attention_heads=6, attention_head_dim=64, in_channels=4,
                                        out_channels=8, num_layers=layers, sample_size=32, patch_size=2).eval()
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",)).eval()
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def to_diffusers_keys(schedule: Schedule, layers: int) -> Schedule:
    """Reference keys name facebookresearch/DiT branches (attn, mlp); diffusers calls them attn1, ff."""
    rename = {"attn": "attn1", "mlp": "ff"}
    out = {}
    for key, row in schedule.entries.items():
        branch, _, block = key.partition("-")
        if block and int(block) >= layers:
            continue
        out[rename.get(branch, branch) + (f"-{block}" if block else "")] = list(row)
    return Schedule(out)


def original_helper(pipe, schedule: Schedule):
    try:
        from SmoothCache import DiffuserCacheHelper as Original
    except ImportError:
        return None
    return Original(pipe.transformer, schedule=schedule.to_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="images per generation (x2 with CFG)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 schedules: a smoke run, not written")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    pipe = build_pipeline(args.layers)
    labels = list(range(args.batch))
    names = NAMES[:2] if args.quick else NAMES
    schedules = {n: to_diffusers_keys(Schedule.load(REFERENCE / f"{n}.json"), args.layers) for n in names}

    model = pipe.transformer
    x = torch.randn(2 * args.batch, 4, 32, 32)
    report = count_macs(model, find_branches(model, ["attn1", "ff"]), x,
                        timestep=torch.full((2 * args.batch,), 500), class_labels=torch.tensor(labels * 2))

    def generate():
        return pipe(class_labels=labels, num_inference_steps=50, generator=torch.manual_seed(0), output_type="np")

    variants = {"no cache": contextlib.nullcontext}
    for name, schedule in schedules.items():
        variants[f"smoothcache {name}"] = lambda s=schedule: SmoothCache(model, s)
    has_original = original_helper(pipe, schedules[names[0]]) is not None
    if has_original:
        for name, schedule in schedules.items():
            variants[f"original {name}"] = lambda s=schedule: _original_context(pipe, s)

    generate()  # warm-up
    times: dict[str, list[float]] = {v: [] for v in variants}
    repeats = 1 if args.quick else args.repeats
    for r in range(repeats):
        for label, make in variants.items():
            with make():
                start = time.perf_counter()
                generate()
                times[label].append(time.perf_counter() - start)
            print(f"repeat {r + 1}/{repeats} {label:<40} {times[label][-1]:.2f}s", flush=True)

    base = statistics.median(times["no cache"])
    rows, results = [], {"machine": machine(), "repeats": repeats, "batch": args.batch, "layers": args.layers,
                         "macs_per_call": report.total, "variants": {}}
    for label, ts in times.items():
        name = label.split(" ", 1)[1] if label != "no cache" else None
        theoretical = report.speedup(schedules[name]) if name else 1.0
        measured = base / statistics.median(ts)
        spread = (max(ts) - min(ts)) / statistics.median(ts)
        results["variants"][label] = {"times": ts, "measured": measured, "theoretical": theoretical}
        rows.append(f"| {label} | {theoretical:.3f}x | {measured:.3f}x | {measured / theoretical:.3f} | "
                    f"{spread:.1%} |")
    print("\n".join(rows))
    if args.quick:
        return
    fractions = {n: report.compute_fraction(s) for n, s in schedules.items()}
    branch_share = sum(report.by_key().values()) / report.total
    md = f"""## Overhead: measured against theoretical speed-up (`bench/overhead.py`)

DiT-S/2-size diffusers `DiTTransformer2DModel` with random weights ({args.layers} layers, hidden 384, 6 heads,
32x32x4 latent, patch 2 -> 256 tokens), batched CFG with {args.batch} images (denoiser batch {2 * args.batch}),
50 DDIM steps, the original implementation's 50-step schedules applied to `attn1` + `ff` (`attn`->`attn1`,
`mlp`->`ff`; `50-N-2-l2c` keeps its first {args.layers} blocks; `diffuser_schedule` caches `attn1` only).
One denoiser call: {report.total / 1e9:.2f} GMAC, of which attn1 + ff are {branch_share:.1%}.
Median of {repeats} interleaved repeats in one process on {results['machine']}.
Theoretical = uncached MACs / cached MACs (torch.utils.flop_counter). Target: measured >= 0.95 x theoretical.

| variant | theoretical | measured | measured / theoretical | spread (max-min)/median |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Compute fraction (MACs) per schedule: {", ".join(f"{n} {f:.1%}" for n, f in fractions.items())}.
{"The original package (dit-smoothcache 0.1.1) ran the same schedules with its per-call print redirected to /dev/null." if has_original else "The original package (dit-smoothcache) was not installed for this run."}
"""
    write_section("overhead", md, results)


@contextlib.contextmanager
def _original_context(pipe, schedule):
    helper = original_helper(pipe, schedule)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        helper.enable()
        try:
            yield
        finally:
            helper.disable()


if __name__ == "__main__":
    main()
