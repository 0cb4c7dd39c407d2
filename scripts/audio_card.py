"""Evaluation and model card of the embedded audio DiT (used by ``scripts/train_audio.py``).

Evaluation with the real pipeline (class ``i % 10``, fixed seeds), scored by
:class:`smoothcache.zoo.audio_eval.AudioEvaluator`: a guidance sweep at 100 DPM-Solver++(3M) SDE steps
(``--sweep-per-class`` x 10 clips; rows already in ``eval_results.json`` are reused unless ``--fresh``), then
the steps table at the chosen guidance (``--eval-per-class`` x 10 clips) with the log-spectral distance and
SNR of each run against the most-steps audio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from smoothcache.zoo.audio_eval import AudioEvaluator, log_spectral_distance, snr
from smoothcache.zoo.audio_model import AUDIO_DIR, audio_pipeline
from smoothcache.zoo.audio_spectrogram import NUM_SAMPLES, SAMPLE_RATE

REPO = Path(__file__).resolve().parents[1]


def generate(pipe, labels: list[int], guidance: float, steps: int, seed: int, batch: int) -> torch.Tensor:
    out = []
    for b, start in enumerate(range(0, len(labels), batch)):
        g = torch.Generator().manual_seed(seed + b)
        out.append(pipe(class_labels=labels[start:start + batch], guidance_scale=guidance,
                        num_inference_steps=steps, generator=g, output_type="pt").audios.float().cpu())
    return torch.cat(out)


def _floors(ev: AudioEvaluator, labels: list[int]) -> dict:
    """Scores of the first ``len(labels)`` held-out clips, as synthesised and Griffin-Lim resynthesised."""
    n = len(labels)
    if not np.array_equal(ev.stats["heldout_labels"][:n], np.asarray(labels)):
        raise ValueError("held-out clips are not ordered by class i % 10; cannot compare like with like")
    floors = {}
    for name, key in (("floor", "heldout_features"), ("floor_resynth", "heldout_resynth_features")):
        feats = torch.from_numpy(ev.stats[key][:n].astype(np.float32))
        with torch.no_grad():
            preds = ev.net.head(feats).argmax(1)
        floors[name] = ev.evaluate_features(feats, preds, labels)
    return floors


def evaluate(args) -> dict:
    """Guidance sweep at 100 steps, then the steps table at the chosen guidance with LSD / SNR vs 100
    steps."""
    torch.set_num_threads(args.threads)
    ev = AudioEvaluator()
    res_path = args.out / "eval_results.json"
    old = json.loads(res_path.read_text()) if res_path.is_file() and not args.fresh else {}
    old_sweep = old.get("sweep", old)  # the legacy layout kept the sweep rows at the top level
    n_sweep = 10 * args.sweep_per_class
    reuse = {(r["scheduler"], r["steps"], r["guidance"], r["seed"]): r for r in old_sweep.get("runs", [])
             if old_sweep.get("samples") == n_sweep}
    pipe = audio_pipeline(folder=args.out)

    def run(labels, steps, guidance, ref=None) -> tuple[dict, torch.Tensor]:
        t0 = time.time()
        audio = generate(pipe, labels, guidance, steps, args.eval_seed, args.eval_batch)
        row = {"scheduler": "dpm-sde", "steps": steps, "guidance": guidance, "seed": args.eval_seed,
               "seconds": round(time.time() - t0, 1), **ev.evaluate(audio, labels),
               "peak": float(audio.abs().amax(dim=(1, 2)).median())}
        if ref is not None:
            row |= {"lsd_db": log_spectral_distance(ref, audio), "snr_db": snr(ref, audio)}
        print(f"{steps:3d} steps  g={guidance:<4} fid {row['fid']:.3f}  prec {row['precision']:.3f}  "
              f"rec {row['recall']:.3f}  cc {row['class_consistency']:.3f}  lsd {row.get('lsd_db', 0):.2f}  "
              f"snr {row.get('snr_db', 0):.2f}  ({row['seconds']:.0f}s)", flush=True)
        return row, audio

    labels = [i % 10 for i in range(n_sweep)]
    sweep = {"samples": n_sweep, **_floors(ev, labels), "runs": []}
    for g in args.sweep:
        key = ("dpm-sde", 100, g, args.eval_seed)
        sweep["runs"].append(reuse[key] if key in reuse else run(labels, 100, g)[0])
    guidance = (
        args.guidance if args.guidance is not None else min(sweep["runs"], key=lambda r: r["fid"])["guidance"]
    )
    print(f"guidance scale for the steps table: {guidance}", flush=True)

    labels = [i % 10 for i in range(10 * args.eval_per_class)]
    results = {
        "samples": len(labels),
        "guidance": guidance,
        "seed": args.eval_seed,
        **_floors(ev, labels),
        "floor_all_heldout": ev.real_floor(),
        "runs": [],
        "sweep": sweep,
    }
    if "sampler_check" in old:  # the ODE / SDE check was run by hand; keep it
        results["sampler_check"] = old["sampler_check"]
    steps = sorted(set(args.steps), reverse=True)
    row, ref = run(labels, steps[0], guidance)
    results["runs"].append(row)
    for s in steps[1:]:
        results["runs"].append(run(labels, s, guidance, ref)[0])
        res_path.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive an interruption
    res_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _row(r: dict, floor_fid: float, first: str, vs: bool = True) -> str:
    cols = (
        f" {r['lsd_db']:.2f} dB | {r['snr_db']:.1f} dB |" if "lsd_db" in r else " (reference) | (reference) |"
    )
    return (
        f"| {first} | **{r['fid']:.2f}** | {r['fid'] / floor_fid:.2f}x | {r['precision']:.3f} | "
        f"{r['recall']:.3f} "
        f"| **{r['class_consistency']:.3f}** |{cols if vs else ''} {r['seconds']:.0f} s |"
    )


def _floor_rows(fl: dict, fr: dict, n: int, vs: bool = True) -> list[str]:
    tail = " - | - | - |" if vs else " - |"
    return [
        f"| real held-out voices (floor, {n} clips) | **{fl['fid']:.2f}** | 1.00x | {fl['precision']:.3f} "
        f"| {fl['recall']:.3f} | {fl['class_consistency']:.3f} |{tail}",
        f"| same, Griffin-Lim resynthesised (vocoder floor) | **{fr['fid']:.2f}** | "
        f"{fr['fid'] / fl['fid']:.2f}x "
        f"| {fr['precision']:.3f} | {fr['recall']:.3f} | {fr['class_consistency']:.3f} |{tail}",
    ]


def _verdict(by: dict[int, dict]) -> str:
    """Which step counts are clearly worse than the most steps (FID up by 20 % or more), in plain words."""
    top = max(by)
    ratios = {s: by[s]["fid"] / by[top]["fid"] for s in sorted(by)[:-1]}
    parts = "; ".join(
        f"{s} steps: FID {q:.2f}x the {top}-step FID, class consistency "
        f"{by[s]['class_consistency']:.3f} vs {by[top]['class_consistency']:.3f}"
        for s, q in ratios.items()
    )
    worse = [s for s, q in ratios.items() if q >= 1.2]
    flat = [s for s, q in ratios.items() if q < 1.2]
    if not flat:
        return f"Fewer steps are clearly worse at every step count, so the model is a yardstick: {parts}."
    if not worse:
        return (
            f"**Fewer steps are NOT worse here** ({parts}): more steps do not buy quality, so the steps axis "
            "is not a yardstick; judge caching by its fidelity to the uncached audio."
        )
    return (
        f"**More steps buy quality only up to {min(flat)} steps**: {', '.join(map(str, worse))} steps "
        f"are clearly worse (FID at least 1.2x), but from {min(flat)} to {top} steps the FID is flat within "
        f"its noise ({parts}). The SDE sampler has converged by about {min(flat)} steps on this small model, "
        f"so at the paper's {top} steps a fewer-steps run is a strong baseline on FID (BENCHMARKS.md shows "
        "it); "
        "the fidelity to the uncached audio (LSD) is what separates the methods there."
    )


def _sampler_check(check: dict | None) -> list[str]:
    """Table of the small sampler check (``eval_results.json`` ``sampler_check``: a one-off run of
    ``audio_pipeline(scheduler=...)`` on clips ``i % 10``, seed 0, kept by :func:`evaluate`, not
    recomputed)."""
    if not check:
        return []
    names = {
        "dpm-sde": "DPM-Solver++(3M) SDE (shipped, corrected third-order step)",
        "dpm-sde-diffusers": "DPM-Solver++(3M) SDE, diffusers 0.42 as is",
        "dpm": "DPM-Solver++(3M) (ODE)",
    }
    rows = [
        f"| {names[r['scheduler']]} | {float(r['guidance'])} | {r['steps']} | **{r['fid']:.2f}** | "
        f"{r['precision']:.3f} | {r['recall']:.3f} | {r['class_consistency']:.3f} |"
        for r in check["runs"]
    ]
    return [
        f"Samplers compared ({check['samples']} clips, seed {check['seed']}; FD has a larger finite-sample "
        "bias "
        "at this size, compare rows within this table only):",
        "",
        "| sampler | guidance | steps | FID | precision | recall | class consistency |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "diffusers 0.42's third-order SDE-DPM-Solver++ step (`DPMSolverMultistepScheduler`, "
        '`algorithm_type="sde-dpmsolver++"`, `solver_order=3`) has a wrong constant in its second-difference '
        "term, so each step adds noise and more steps made the audio *worse* (FID 2.77 at 100 steps against "
        "1.65 at 25, class consistency 0.92). The shipped scheduler, "
        "`smoothcache.zoo.audio_scheduler.DPMSolver3MSDEScheduler`, corrects that step (tested against the "
        "exact solution for Gaussian data); with it 100 steps are as good as 25. The deterministic "
        "DPM-Solver++(3M) improves steadily with steps but stays behind the SDE at every step count.",
        "",
    ]


def render_card(info: dict, results: dict | None, folder: Path) -> str:
    feat_cfg = json.loads((REPO / "src/smoothcache/zoo/audio_features/config.json").read_text())
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 1e6
    secs = NUM_SAMPLES / SAMPLE_RATE
    c, t = info["latent_shape"]
    text = (REPO / "scripts/audio_card_template.md").read_text()
    curve = info["loss_curve"]
    picks = sorted(
        {0, len(curve) // 8, len(curve) // 4, len(curve) // 2, 3 * len(curve) // 4, len(curve) - 1}
    )
    loss_rows = "\n".join(
        f"| {curve[i][0]} | {curve[i][2]:.1f} | {curve[i][1]:.4f} |" for i in picks if curve
    )
    fields = dict(
        params=f"{info['params'] / 1e6:.2f}",
        size_mb=f"{size_mb:.1f}",
        hidden=info["hidden"],
        heads=info["heads"],
        head_dim=info["hidden"] // info["heads"],
        kv_heads=max(1, info["heads"] // 2),
        layers=info["layers"],
        tokens=info["class_tokens"],
        channels=c,
        var_kept=f"{info['latent_variance_kept']:.1%}",
        frames=t,
        seconds=f"{secs:.2f}",
        sample_rate=SAMPLE_RATE,
        num_samples=NUM_SAMPLES,
        train_clips=info["train_clips"],
        iterations=info["iterations"],
        batch=info["batch_size"],
        epochs=info["epochs"],
        lr=f"{info['lr']:g}",
        warmup=info["warmup"],
        min_lr=f"{info['lr'] * info['min_lr_frac']:.1e}",
        ema=info["ema"],
        label_dropout=f"{info['label_dropout']:.0%}",
        wall_min=f"{info['wall_seconds'] / 60:.1f}",
        sec_per_it=info["seconds_per_iteration"],
        machine=info["machine"],
        stopped=(
            f" of {info['planned_iterations']} planned (the wall-clock budget ended the run; the cosine "
            "decay "
            "follows the larger of the iteration and time fractions, so it still completed)"
            if info["stopped_early"]
            else ""
        ),
        loss_rows=loss_rows,
        clf_acc=f"{feat_cfg['heldout_accuracy']:.2%}",
        clf_acc_rs=f"{feat_cfg['heldout_resynth_accuracy']:.2%}",
        clf_train=feat_cfg["train_clips"],
    )
    card = text.format(**fields)
    if results is None:
        return card + "\n(not evaluated yet: run `python scripts/train_audio.py --eval-only`)\n"
    n, g, sw = results["samples"], results["guidance"], results["sweep"]
    by = {r["steps"]: r for r in results["runs"]}
    top = max(by)
    head = [
        "| | FID | / floor | precision | recall | class consistency | time |",
        "|---|---|---|---|---|---|---|",
    ]
    head_vs = [
        head[0].replace("| time |", f"| LSD vs {top} steps | SNR vs {top} steps | time |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best = min(sw["runs"], key=lambda r: r["fid"])
    lines = [
        f"### Steps at guidance {float(g)} (DPM-Solver++(3M) SDE; {n} clips, {n // 10} per word, seed "
        f"{results['seed']} in every row)",
        "",
        *head_vs,
        *[_row(by[s], results["floor"]["fid"], f"{s} steps") for s in sorted(by, reverse=True)],
        *_floor_rows(results["floor"], results["floor_resynth"], n),
        "",
        _verdict(by),
        "",
        f"LSD (log-spectral distance, 80 dB floor) and SNR compare each clip with the {top}-step clip of "
        "the same seed. "
        "Every row starts from the same noise, but the SDE draws its per-step noise from the generator as it "
        "goes, so fewer steps also means other noise increments: these figures measure how far a run lands "
        f"from the {top}-step audio, not the solver error alone. A cached run draws the same noise as "
        "the uncached one, so the demo's LSD / SNR against no cache are tighter comparisons.",
        "",
        *_sampler_check(results.get("sampler_check")),
        f"### Guidance sweep (100 steps, {sw['samples']} clips, {sw['samples'] // 10} per word)",
        "",
        *head,
        *[_row(r, sw["floor"]["fid"], f"guidance {float(r['guidance'])}", vs=False) for r in sw["runs"]],
        *_floor_rows(sw["floor"], sw["floor_resynth"], sw["samples"], vs=False),
        "",
        f"Chosen: `AUDIO_GUIDANCE_SCALE = {float(g)}`"
        + (
            " (the lowest FID of the sweep)."
            if g == best["guidance"]
            else f" (the sweep's lowest FID is at {best['guidance']:g})."
        ),
        "Guidance <= 1 runs one transformer call per step; above 1 the batch is doubled (null class first), "
        "so every step costs two transformer passes.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "apt-get install -y espeak-ng                 # the data script only",
        "python scripts/make_audio_data.py            # /work/data/audio (~1 min)",
        "python scripts/train_audio_features.py       # the evaluator's classifier (~15-25 min)",
        "python scripts/train_audio.py                # this folder + card (training <= 65 min, evaluation "
        "~30 min)",
        "```",
        "",
    ]
    return card + "\n".join(lines) + "\n"


def write_card(folder: Path = AUDIO_DIR) -> None:
    info = json.loads((folder / "train_info.json").read_text())
    res_path = folder / "eval_results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else None
    if results is not None and "guidance" not in results:
        results = None  # an interrupted evaluation
    (folder / "README.md").write_text(render_card(info, results, folder))
    print(f"wrote {folder / 'README.md'}")
