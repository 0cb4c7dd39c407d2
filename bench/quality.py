"""Quality benchmark on the embedded digits DiT: measured speed-up against Digits-FID, per method.

Settings: DDIM 50 (also 30 and 70) and DPM-Solver++ 20, at the model's guidance scale. Methods: no cache;
fewer solver steps (the compute-matched baseline); FORA (fixed interval N = 2, 3); SmoothCache over an
alpha sweep (alphas picked by budget mode to spread the compute fraction), per-type and per-block; for
DDIM 30/70 also a schedule resampled from the 50-step calibration; diffusers' built-in caches where they run
on DiT (bench/peers.py). Every method: metrics on >= 1,000 samples (100 per class, fixed seeds) and a
measured speed-up from interleaved timing rounds in this process. Writes the BENCHMARKS.md section, a JSON
file and a Pareto plot (measured speed-up against Digits-FID).

    python bench/quality.py [--samples 1000] [--rounds 3] [--timing-samples 100] [--settings ddim50 ...]
    python bench/quality.py --report   # BENCHMARKS.md + plot from bench/results/quality_<setting>.json
    torchrun --standalone --nproc_per_node=2 bench/quality.py   # samples generated data-parallel
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, machine  # noqa: E402

from smoothcache import MacReport, Schedule, SmoothCache, distributed  # noqa: E402
from smoothcache.zoo.demo import calibrate_digits  # noqa: E402
from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_evaluator, digits_pipeline  # noqa: E402

SETTINGS = {"ddim50": ("ddim", 50), "ddim30": ("ddim", 30), "ddim70": ("ddim", 70), "dpm20": ("dpm", 20)}
FRACTIONS = (0.85, 0.75, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4)  # compute fractions the alpha sweep aims at
PER_BLOCK_FRACTIONS = (0.75, 0.6, 0.5, 0.4)  # per-block schedules, compared with per-type at equal compute
BATCH = 100  # samples per seeded generation batch (10 per class)


@dataclass
class Method:
    """One way to generate: its family (for plotting), how many steps, and a context that applies it."""

    name: str
    family: str
    steps: int
    theoretical: float
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    info: dict = field(default_factory=dict)


def cached(pipe, schedule: Schedule) -> Callable:
    return lambda: SmoothCache(pipe.transformer, schedule)


def build_methods(pipe, steps: int, profile, profile50, report: MacReport, with_peers: bool) -> list[Method]:
    methods = [Method("no cache", "no cache", steps, 1.0)]
    for fraction in (0.8, 0.66, 0.5, 0.4, 0.33):
        k = max(2, round(steps * fraction))
        if k < steps:
            methods.append(Method(f"{k} steps", "fewer steps", k, steps / k))
    for n in (2, 3):
        s = Schedule.fixed_interval(steps, n, ["attn1", "ff"])
        methods.append(Method(f"FORA N={n}", "FORA", steps, report.speedup(s), cached(pipe, s)))
    for per_block in (False, True):
        family = "SmoothCache per-block" if per_block else "SmoothCache"
        for fraction in PER_BLOCK_FRACTIONS if per_block else FRACTIONS:
            s = Schedule.for_budget(profile, compute_fraction=fraction, per_block=per_block)
            alpha = s.metadata["alpha"]
            methods.append(Method(f"{family} a={alpha:.3f}", family, steps, report.speedup(s), cached(pipe, s),
                                  {"alpha": alpha, "target_fraction": fraction,
                                   "achieved_fraction": s.metadata["achieved"]}))
    if profile50 is not None and profile50.num_steps != steps:
        resampled = profile50.resample(steps)
        for fraction in PER_BLOCK_FRACTIONS:
            s = Schedule.for_budget(resampled, compute_fraction=fraction)
            methods.append(Method(f"SmoothCache resampled 50->{steps} a={s.metadata['alpha']:.3f}",
                                  "SmoothCache resampled", steps, report.speedup(s), cached(pipe, s),
                                  {"alpha": s.metadata["alpha"], "target_fraction": fraction}))
    if with_peers:
        from peers import measure_compute, peer_methods

        attn, ff = report.by_key()["attn1"], report.by_key()["ff"]
        for name, peer in peer_methods(pipe, steps, DIGITS_GUIDANCE_SCALE, list(range(10))).items():
            # theoretical: the attn1 / ff rows the peer really executed over a generation, weighted by MACs
            count = measure_compute(pipe, peer, class_labels=list(range(10)), num_inference_steps=steps,
                                    guidance_scale=DIGITS_GUIDANCE_SCALE)
            saved = attn * (1 - count.attn_fraction) + ff * (1 - count.ff_fraction)
            methods.append(Method(name, "diffusers " + peer.family, steps, report.total / (report.total - saved),
                                  peer.apply, {"config": str(peer.config)}))
    return methods


def generate(pipe, method: Method, labels: list[int], seed: int):
    with method.context():
        return pipe(class_labels=labels, num_inference_steps=method.steps, guidance_scale=DIGITS_GUIDANCE_SCALE,
                    generator=torch.manual_seed(seed), output_type="pt").images


def evaluate_setting(key: str, args, evaluator, profile50) -> dict:
    scheduler, steps = SETTINGS[key]
    pipe = digits_pipeline(scheduler=scheduler)
    profile = calibrate_digits(pipe, steps, runs=2)
    report = MacReport.from_profile(profile)
    methods = build_methods(pipe, steps, profile, profile50, report, not args.no_peers)
    say = print if distributed.rank() == 0 else (lambda *a, **k: None)

    # timing: rounds of every method on the same batch, interleaved
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    labels = [i % 10 for i in range(args.timing_samples)]
    generate(pipe, methods[0], labels, 0)  # warm-up
    for r in range(args.rounds):
        for m in methods:
            start = time.perf_counter()
            generate(pipe, m, labels, 0)
            times[m.name].append(time.perf_counter() - start)
        say(f"[{key}] timing round {r + 1}/{args.rounds} done", flush=True)
    base = statistics.median(times["no cache"])

    # quality: >= 1,000 samples per method, batches of 100 with fixed seeds, data-parallel over ranks
    batches = distributed.shard(list(range(args.samples // BATCH)))
    rows = {}
    reference = None
    for m in methods:
        start = time.perf_counter()
        try:
            local = [generate(pipe, m, [i % 10 for i in range(BATCH)], seed) for seed in batches]
            images = distributed.gather(torch.cat(local) if local else torch.empty(0, 1, 16, 16))
            error = None
        except Exception as err:  # a peer that fails here is recorded verbatim, not hidden
            images, error = None, f"{type(err).__name__}: {err}"
        row = {"family": m.family, "steps": m.steps, "theoretical": m.theoretical, **m.info,
               "measured": base / statistics.median(times[m.name]), "seconds": times[m.name]}
        if images is not None:
            labels_all = [i % 10 for i in range(images.shape[0])]
            row.update(evaluator.evaluate(images, labels_all))
            if reference is None:
                reference = images
            else:
                from smoothcache.zoo.metrics import psnr, ssim

                row["psnr_vs_no_cache"], row["ssim_vs_no_cache"] = psnr(images, reference), ssim(images, reference)
        else:
            row["error"] = error
        rows[m.name] = row
        say(f"[{key}] {m.name:<44} measured {row['measured']:.2f}x  "
            + (f"FID {row['fid']:.2f}  cc {row['class_consistency']:.3f}" if "fid" in row else row["error"])
            + f"  ({time.perf_counter() - start:.0f}s)", flush=True)
    return {"scheduler": scheduler, "steps": steps, "profile": profile, "methods": rows}


def pareto_plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.2), squeeze=False)
    styles = {"no cache": ("k", "*"), "fewer steps": ("tab:gray", "s"), "FORA": ("tab:orange", "^"),
              "SmoothCache": ("tab:blue", "o"), "SmoothCache per-block": ("tab:cyan", "D"),
              "SmoothCache resampled": ("tab:purple", "v")}
    for ax, key in zip(axes[0], keys):
        rows = results[key]["methods"]
        families = dict.fromkeys(r["family"] for r in rows.values())
        for fam in families:
            pts = sorted((r["measured"], r["fid"]) for r in rows.values() if r["family"] == fam and "fid" in r)
            if not pts:
                continue
            color, marker = styles.get(fam, (None, "x"))
            line = "-" if fam in ("fewer steps", "SmoothCache", "SmoothCache per-block") else ""
            ax.plot(*zip(*pts), marker=marker, linestyle=line, color=color, label=fam, markersize=6)
        ax.set_title(f"{results[key]['scheduler'].upper()} {results[key]['steps']} steps")
        ax.set_xlabel("measured speed-up (x)")
        ax.set_ylabel("Digits-FID (lower is better)")
        ax.grid(alpha=0.3)
    legend = {}
    for ax in axes[0]:  # one legend for all panels: a family may appear in some settings only
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timing-samples", type=int, default=100)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="no generation: write BENCHMARKS.md and the plot from the saved per-setting results")
    args = parser.parse_args()
    distributed.init()
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // distributed.world_size())))

    evaluator = None if args.report else digits_evaluator()
    floor = None if args.report else evaluator.real_floor()["fid"]
    profile50 = None
    for key in [] if args.report else args.settings:
        if key != "ddim50" and profile50 is None and SETTINGS[key][0] == "ddim":
            profile50 = calibrate_digits(digits_pipeline(), 50, runs=2)
        result = evaluate_setting(key, args, evaluator, profile50)
        if key == "ddim50":
            profile50 = result.pop("profile")
        result.pop("profile", None)
        if distributed.rank() == 0:  # saved per setting, so settings can run as separate processes
            run = {"samples": args.samples, "rounds": args.rounds, "timing_samples": args.timing_samples,
                   "machine": machine(), "floor": floor, "peers": not args.no_peers}
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"quality_{key}.json").write_text(json.dumps({**result, **run}, indent=2) + "\n")
    if distributed.rank() == 0:
        from quality_report import write_report

        results = {k: json.loads((RESULTS / f"quality_{k}.json").read_text())
                   for k in SETTINGS if (RESULTS / f"quality_{k}.json").exists()}
        plot = pareto_plot(results, RESULTS / "pareto.png")
        write_report(results, plot)
    distributed.finish()


if __name__ == "__main__":
    main()
