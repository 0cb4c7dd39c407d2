"""Train the embedded class-conditional digits DiT and write its pipeline folder + model card.

    python scripts/train_digits.py                 # train (<= 38 min on 2 CPU cores), then evaluate (~20 min)
    python scripts/train_digits.py --skip-eval     # train only
    python scripts/train_digits.py --eval-only     # evaluate the saved folder, rewrite the model card

Training (fixed seed, CPU, 2 threads): a ``DiTTransformer2DModel`` in pixel space
on the 16x16 upsampled sklearn digits (train split only), v-prediction with the
cosine (``squaredcos_cap_v2``) schedule, forward process by diffusers'
``DDPMScheduler.add_noise``, label dropout 10% to the null class 1000 (the class
``DiTPipeline`` uses for classifier-free guidance), AdamW with warmup + cosine
decay, EMA of the weights (the EMA weights are saved).  The output folder is a
``DiTPipeline.save_pretrained`` folder (transformer, IdentityVAE, DDIMScheduler).

Evaluation: 1,000 samples (100 per class, fixed seeds) per configuration with
the real pipeline, scored by :class:`smoothcache.zoo.digits_eval.DigitsEvaluator`.
"""

from __future__ import annotations

import os

# The CPU may be shared with other jobs: with OpenMP's default spin-waiting, two torch threads
# competing with another process run up to ~7x slower; passive waiting keeps them efficient.
# (Must be set before torch is imported.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DiTPipeline, DiTTransformer2DModel

from smoothcache.zoo import DIGITS_DIR, digits_evaluator, digits_pipeline
from smoothcache.zoo.digits_data import SPLIT_SEED, digits_split
from smoothcache.zoo.identity_vae import IdentityVAE
from training_args import add_training_arguments  # scripts/training_args.py (run from scripts/)

SEED = 0
NULL_CLASS = 1000  # hard-coded by DiTPipeline
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def build_model(args) -> DiTTransformer2DModel:
    return DiTTransformer2DModel(
        num_attention_heads=args.heads, attention_head_dim=args.hidden // args.heads,
        in_channels=1, out_channels=1, num_layers=args.layers, sample_size=16, patch_size=2,
        num_embeds_ada_norm=1000,
    )


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over ``args.warmup`` iterations, then cosine decay over ``progress`` in [0, 1]."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    warm = args.warmup / args.iters
    p = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1 - warm)))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def train(args) -> dict:
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(SEED)
    split = digits_split()
    x_train, y_train = split.train_images, split.train_labels
    n = len(y_train)

    model = build_model(args)
    # The per-block LabelEmbedding would drop labels independently in every block (and
    # again for the final layer) in train mode; drop them ourselves, once per sample.
    for block in model.transformer_blocks:
        block.norm1.emb.class_embedder.dropout_prob = 0.0
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: hidden {args.hidden}, {args.layers} blocks, {args.heads} heads, {n_params / 1e6:.2f}M params"
    )

    noise_sched = DDPMScheduler(**SCHEDULE)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    model.train()
    perm, cursor = torch.randperm(n, generator=gen), 0
    t0 = time.time()
    running, done = 0.0, 0
    stopped_early = False
    for step in range(args.iters):
        if cursor + args.batch_size > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        x0, y = x_train[idx], y_train[idx].clone()
        y[torch.rand(len(y), generator=gen) < args.label_dropout] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=gen)
        # stratified timesteps: lower-variance coverage of [0, 1000)
        u = (torch.rand(1, generator=gen) + torch.arange(len(y)) / len(y)) % 1.0
        t = (u * noise_sched.config.num_train_timesteps).long()[torch.randperm(len(y), generator=gen)]
        x_t = noise_sched.add_noise(x0, noise, t)
        target = noise_sched.get_velocity(x0, noise, t)

        # Progress is the larger of the iteration and the wall-clock fraction, so when the CPU is
        # shared (slower iterations) the cosine decay still completes within --max-minutes.
        elapsed = time.time() - t0
        progress = max(step / args.iters, elapsed / (args.max_minutes * 60) if args.max_minutes > 0 else 0.0)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at iteration {step}; stopping")
            stopped_early = True
            break
        lr = lr_at(progress, step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        pred = model(x_t, timestep=t, class_labels=y).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)

        running += loss.item()
        done = step + 1
        if done % args.log_every == 0 or done == args.iters:
            elapsed = time.time() - t0
            print(
                f"iter {done:5d}/{args.iters}  loss {running / args.log_every:.4f}  lr {lr:.2e}  "
                f"{elapsed / done:.3f}s/it  elapsed {elapsed / 60:.1f} min  "
                f"eta {(args.iters - done) * elapsed / done / 60:.1f} min",
                flush=True,
            )
            running = 0.0
    wall = time.time() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    ema = ema.to(torch.float16) if args.fp16 else ema
    pipe = DiTPipeline(
        transformer=ema,
        vae=IdentityVAE(in_channels=1, latent_channels=1, out_channels=1, sample_size=16),
        scheduler=DDIMScheduler(
            **SCHEDULE, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing", steps_offset=0
        ),
        id2label={i: str(i) for i in range(10)},
    )
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    # save_pretrained keeps only the components in model_index.json, but from_pretrained
    # passes optional __init__ kwargs found there: add id2label so get_label_ids(["3"]) works.
    index_path = args.out / "model_index.json"
    index = json.loads(index_path.read_text())
    index["id2label"] = {str(i): str(i) for i in range(10)}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    info = {
        "seed": SEED,
        "split_seed": SPLIT_SEED,
        "train_images": n,
        "iterations": done,
        "planned_iterations": args.iters,
        "stopped_early": stopped_early,
        "batch_size": args.batch_size,
        "epochs": round(done * args.batch_size / n, 1),
        "lr": args.lr,
        "warmup": args.warmup,
        "min_lr_frac": args.min_lr_frac,
        "weight_decay": args.weight_decay,
        "ema": args.ema,
        "label_dropout": args.label_dropout,
        "hidden": args.hidden,
        "heads": args.heads,
        "layers": args.layers,
        "params": n_params,
        "weights_dtype": "float16" if args.fp16 else "float32",
        "wall_seconds": round(wall, 1),
        "seconds_per_iteration": round(wall / max(done, 1), 3),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
    (args.out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"trained {done} iterations in {wall / 60:.1f} min; wrote {args.out}")
    return info


# ------------------------------------------------------------------ evaluation
def generate(pipe, labels: list[int], guidance: float, steps: int, seed: int, batch: int) -> torch.Tensor:
    images = []
    for b, start in enumerate(range(0, len(labels), batch)):
        torch.manual_seed(seed + b)  # for the stochastic (SDE) schedulers
        g = torch.Generator().manual_seed(seed + b)
        out = pipe(
            class_labels=labels[start : start + batch],
            guidance_scale=guidance,
            num_inference_steps=steps,
            generator=g,
            output_type="pt",
        )
        images.append(out.images.float().cpu())
    return torch.cat(images)


def evaluate(args) -> dict:
    torch.set_num_threads(2)
    ev = digits_evaluator()
    labels = [i % 10 for i in range(10 * args.eval_per_class)]
    results = {"samples": len(labels), "floor": ev.real_floor(), "runs": []}
    res_path = args.out / "eval_results.json"
    previous = {}
    if res_path.is_file() and not args.fresh:  # reuse rows already computed with the same settings
        old = json.loads(res_path.read_text())
        if old.get("samples") == len(labels):
            previous = {(r["scheduler"], r["steps"], r["guidance"], r.get("seed", 0)): r for r in old["runs"]}
    pipes = {}
    # memorisation check: median pixel-space distance to the nearest TRAIN image
    split = digits_split()
    train_flat = split.train_images.flatten(1)

    def nn_dist(images_m11: torch.Tensor) -> float:
        return float(torch.cdist(images_m11.flatten(1), train_flat).min(dim=1).values.median())

    results["floor"]["nn_train_dist"] = nn_dist(split.test_images)
    # the floor uses the 300 held-out images; FD has a finite-sample bias that shrinks with N, so
    # each run is also scored on its first 300 samples (30 per class) for a like-for-like comparison
    n_floor = len(split.test_labels)

    def run(kind: str, steps: int, guidance: float, seed: int | None = None) -> None:
        seed = args.eval_seed if seed is None else seed
        key = (kind, steps, guidance, seed)
        if key in previous and all(k in previous[key] for k in ("fid_300", "nn_train_dist")):
            results["runs"].append(previous[key])
            print(
                f"{kind:8s} {steps:3d} steps  g={guidance:<4}  seed {seed}: reused fid "
                f"{previous[key]['fid']:.3f}"
            )
            return
        if kind not in pipes:
            pipes[kind] = load_pipe(args.out, kind)
        t0 = time.time()
        imgs = generate(pipes[kind], labels, guidance, steps, seed=seed, batch=args.eval_batch)
        secs = time.time() - t0
        metrics = ev.evaluate(imgs, labels)
        row = {
            "scheduler": kind,
            "steps": steps,
            "guidance": guidance,
            "seed": seed,
            "seconds": round(secs, 1),
            **metrics,
            "fid_300": ev.evaluate(imgs[:n_floor], labels[:n_floor])["fid"],
            "nn_train_dist": nn_dist(imgs * 2 - 1),
        }
        results["runs"].append(row)
        print(
            f"{kind:8s} {steps:3d} steps  g={guidance:<4}  seed {seed}  fid {metrics['fid']:.3f}  prec "
            f"{metrics['precision']:.3f}"
            f"  rec {metrics['recall']:.3f}  cc {metrics['class_consistency']:.3f}  fid@300 "
            f"{row['fid_300']:.3f}"
            f"  nn {row['nn_train_dist']:.3f}"
            f"  ({secs:.0f}s)",
            flush=True,
        )

    print(f"floor: {results['floor']}")
    for g in args.sweep:
        run("ddim", args.sweep_steps, g)
    sweep = [r for r in results["runs"] if r["steps"] == args.sweep_steps]
    guidance = args.guidance if args.guidance is not None else min(sweep, key=lambda r: r["fid"])["guidance"]
    print(f"guidance scale for the sampler table: {guidance}")
    for kind, steps in (("ddim", 10), ("ddim", 20), ("ddim", 50), ("dpm", 10), ("dpm", 20)):
        if not (kind == "ddim" and steps == args.sweep_steps and guidance in args.sweep):
            run(kind, steps, guidance)
    for steps in (10, 50):  # seed-to-seed spread of the headline numbers
        run("ddim", steps, guidance, seed=args.eval_seed + 1000)
    results["guidance"] = guidance
    results["sweep_steps"] = args.sweep_steps
    (args.out / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def load_pipe(folder: Path, kind: str):
    if folder.resolve() == DIGITS_DIR.resolve():
        return digits_pipeline(scheduler=kind)
    from diffusers import DPMSolverMultistepScheduler

    pipe = DiTPipeline.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    if kind != "ddim":
        algo = "dpmsolver++" if kind == "dpm" else "sde-dpmsolver++"
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type=algo)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------ model card
def _fmt_row(r: dict, floor_fid: float) -> str:
    sched = {"ddim": "DDIM", "dpm": "DPM-Solver++ (2M)", "dpm-sde": "SDE-DPM-Solver++"}[r["scheduler"]]
    return (
        f"| {sched} | {r['steps']} | {float(r['guidance'])} | **{r['fid']:.3f}** | {r['fid_300']:.3f} "
        f"| {r['fid_300'] / floor_fid:.2f}x "
        f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['class_consistency']:.3f} | {r['seconds']:.0f} s |"
    )


def render_card(info: dict, results: dict | None, folder: Path) -> str:
    feat_cfg = json.loads(
        (Path(__file__).resolve().parents[1] / "src/smoothcache/zoo/digits_features/config.json").read_text()
    )
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 1e6
    lines = [
        "# digits-dit-16: a tiny class-conditional DiT on scikit-learn's handwritten digits",
        "",
        "A really trained, pixel-space, class-conditional Diffusion Transformer shipped inside",
        "`smoothcache` as the offline yardstick for SmoothCache (layer caching): it runs on CPU",
        "in seconds, needs no network, and more sampling steps clearly buy quality, so a cache",
        "that skips computation has something to lose.",
        "",
        "```python",
        "import torch",
        "from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_evaluator, digits_pipeline",
        'pipe = digits_pipeline(scheduler="ddim")          # DiTPipeline.from_pretrained(<this folder>)',
        "labels = [i % 10 for i in range(1000)]",
        "images = pipe(class_labels=labels, guidance_scale=DIGITS_GUIDANCE_SCALE, num_inference_steps=50,",
        '              generator=torch.Generator().manual_seed(0), output_type="pt").images'
        "  # (N,1,16,16) in [0,1]",
        "print(digits_evaluator().evaluate(images, labels))  # fid, precision, recall, class_consistency",
        "```",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        "| model | diffusers `DiTTransformer2DModel` (adaLN-Zero blocks) |",
        "| input / output | 1 x 16 x 16 pixels in [-1, 1] (`in_channels=1`, `out_channels=1`, no learned "
        "sigma) |",
        "| tokens | patch size 2 -> 8 x 8 = 64 tokens |",
        f"| width / heads / blocks | {info['hidden']} / {info['heads']} (head dim "
        f"{info['hidden'] // info['heads']}) "
        f"/ {info['layers']} |",
        f"| parameters | {info['params'] / 1e6:.2f} M, stored as {info['weights_dtype']} safetensors "
        f"({size_mb:.1f} MB in total) |",
        "| conditioning | classes 0-9; `num_embeds_ada_norm=1000` because `DiTPipeline` hard-codes 1000 as "
        "the "
        "null class of classifier-free guidance (rows 10-999 of the label tables are unused) |",
        "| VAE | `smoothcache.zoo.identity_vae.IdentityVAE` (pixel space, `scaling_factor=1.0`) |",
        "| scheduler | `DDIMScheduler`, 1000 steps, `squaredcos_cap_v2` (cosine) betas, `v_prediction`, "
        '`timestep_spacing="trailing"`, `clip_sample=False`; '
        "`DPMSolverMultistepScheduler.from_config` works too |",
        '| labels | `id2label` 0..9, so `pipe.get_label_ids(["3"]) == [3]` |',
        "",
        "v-prediction with the cosine schedule: at t = 999 the cosine schedule has almost no signal left, "
        "where an",
        "epsilon-predicting model's x0 estimate (and hence DPM-Solver++) blows up; v stays well "
        "conditioned. Trailing",
        "timestep spacing makes few-step samplers start from t = 999 (pure noise), matching the initial "
        "latents.",
        "",
        "## Data",
        "",
        "`sklearn.datasets.load_digits()` (1,797 8x8 images, 10 classes, bundled with scikit-learn, "
        "offline).",
        "Each 8x8 digit is upsampled to 16x16 with bilinear interpolation (`align_corners=False`: standard "
        "pixel-centre",
        "resize, no half-pixel shift, and no blocky 2x2 patches aligned with the transformer's patches) and "
        "scaled",
        "to [-1, 1]. Deterministic stratified split (`smoothcache.zoo.data.digits_split`, seed "
        f"{info['split_seed']}): {info['train_images']} train / {1797 - info['train_images']} held-out "
        "images.",
        "The DiT and the feature network are trained on the train split only. No augmentation (flips or "
        "shifts",
        "would change the data distribution: the digits are centred and flips make other symbols).",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| iterations | {info['iterations']} (batch {info['batch_size']}, about {info['epochs']:g} epochs)"
        + (
            f" of {info['planned_iterations']} planned: the wall-clock budget (`--max-minutes`) ended the "
            "run; the "
            "cosine decay follows the larger of the iteration and time fractions, so it still completed"
            if info.get("stopped_early")
            else ""
        )
        + " |",
        "| objective | MSE on v, uniform (stratified) timesteps 0..999, forward process "
        "`DDPMScheduler.add_noise` |",
        f"| optimiser | AdamW, betas (0.9, 0.99), weight decay {info['weight_decay']:g}, grad-norm clip 1.0 "
        "|",
        f"| learning rate | {info['lr']:g}, linear warmup {info['warmup']} iterations, cosine decay to "
        f"{info['lr'] * info['min_lr_frac']:.1e} |",
        f"| EMA | decay {info['ema']} (with the usual (1+n)/(10+n) warm-up); the EMA weights are shipped |",
        f"| label dropout | {info['label_dropout']:.0%} to the null class 1000, once per sample (the "
        "per-block "
        "`LabelEmbedding` dropout is switched off during training because it would drop labels independently "
        "in every block) |",
        f"| seed | {info['seed']} |",
        f"| wall time | **{info['wall_seconds'] / 60:.1f} min** ({info['seconds_per_iteration']} "
        "s/iteration) on "
        f"{info['machine']} |",
        "",
        "## Evaluation",
        "",
        "Digits-FID is the Fréchet distance between Gaussians fitted to features of the small digits CNN",
        "shipped in `smoothcache/zoo/digits_features/` (64-d penultimate layer; trained on the train split "
        "only;",
        f"held-out accuracy **{feat_cfg['heldout_accuracy']:.2%}**), against the train-split reference "
        "statistics.",
        "Precision / recall: Kynkäänniemi et al. (2019), k = 3, against the train-split features. Class "
        "consistency:",
        "fraction of samples that the CNN classifies as the requested class.",
    ]
    if results is None:
        lines += ["", "(not evaluated yet: run `python scripts/train_digits.py --eval-only`)", ""]
        return "\n".join(lines) + "\n"
    floor = results["floor"]
    g = results["guidance"]
    seed0 = min(r.get("seed", 0) for r in results["runs"])
    runs = [r for r in results["runs"] if r.get("seed", 0) == seed0]
    other_seed = [r for r in results["runs"] if r.get("seed", 0) != seed0]
    head = [
        "| sampler | steps | guidance | Digits-FID | Digits-FID (first 300) | / floor | precision | recall "
        "| class consistency | time (1,000 samples) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    main_rows = [
        r
        for r in runs
        if r["guidance"] == g and not (r["scheduler"] == "ddim" and r["steps"] not in (10, 20, 50))
    ]
    order = {("ddim", 10): 0, ("ddim", 20): 1, ("ddim", 50): 2, ("dpm", 10): 3, ("dpm", 20): 4}  # table order
    main_rows.sort(key=lambda r: order.get((r["scheduler"], r["steps"]), 9))
    by = {(r["scheduler"], r["steps"]): r for r in main_rows}
    sweep_rows = [
        r for r in runs if r["scheduler"] == "ddim" and r["steps"] == results.get("sweep_steps", 50)
    ]
    best = min(sweep_rows, key=lambda r: r["fid"])
    lines += [
        "",
        f"### Samplers at the chosen guidance scale {float(g)} ({results['samples']} samples, 100 per class, "
        "fixed seeds)",
        "",
        *head,
        *[_fmt_row(r, floor["fid"]) for r in main_rows],
        f"| real held-out split (floor, 300 images) | - | - | - | **{floor['fid']:.3f}** | 1.00x "
        f"| {floor['precision']:.3f} "
        f"| {floor['recall']:.3f} | - | - |",
        "",
    ]
    if ("ddim", 10) in by and ("ddim", 50) in by:
        lines.append(
            "DDIM 10 steps / DDIM 50 steps Digits-FID ratio: "
            f"**{by[('ddim', 10)]['fid'] / by[('ddim', 50)]['fid']:.2f}x**."
        )
        lines.append("")
    if other_seed:
        spread = ", ".join(
            f"DDIM {r['steps']}: {r['fid']:.3f} (vs {by[('ddim', r['steps'])]['fid']:.3f})"
            for r in other_seed
            if ("ddim", r["steps"]) in by
        )
        lines += [
            f"Seed check (another {results['samples']} samples, seed {other_seed[0]['seed']}): {spread}.",
            "",
        ]
    lines += [
        "The floor is the Fréchet distance of the 300 real held-out images to the train reference. FD has a",
        "finite-sample bias that shrinks with N, so the `/ floor` column compares like with like: the first "
        "300",
        "samples (30 per class) of each run against the floor. Note that the reference is the train split "
        "the",
        "model was fitted to, while the held-out images are other handwriting, so a well-fitted model can "
        "score",
        "below the floor; the memorisation check below shows that it does not get there by copying.",
        "Times: wall clock of the whole pipeline call on 2 CPU cores, batches of 500 class labels, guidance",
        "doubles the transformer batch.",
        "",
        "Why Digits-FID figures differ between this card, `make demo` and BENCHMARKS.md: the Fréchet "
        "distance",
        "is biased upwards on small sample sets and moves with the seeds, so the same DDIM 50 sampler scores",
        "about 0.30 here (1000 samples, batches of 500), 0.44 in the quality benchmark (1000 samples in "
        "batches",
        "of 100 with other seeds) and about 0.75 in `make demo` (300 samples). Compare figures within one "
        "table only.",
        "",
        "Memorisation check: the median pixel-space (L2, range [-1, 1]) distance from a sample to its "
        "nearest",
        f"train image is {by[('ddim', 50)]['nn_train_dist']:.2f} for DDIM 50 steps, against "
        f"{floor['nn_train_dist']:.2f} for the real held-out images"
        + (
            ": the samples are not copies of the train set."
            if by[("ddim", 50)]["nn_train_dist"] >= 0.8 * floor["nn_train_dist"]
            else ": the samples sit closer to the train set than real unseen "
            "digits do (partial memorisation)."
        )
        if ("ddim", 50) in by and "nn_train_dist" in floor
        else "",
        "",
        f"### Guidance sweep (DDIM {results.get('sweep_steps', 50)} steps, {results['samples']} samples)",
        "",
        *head,
        *[_fmt_row(r, floor["fid"]) for r in sweep_rows],
        "",
        f"Chosen: `DIGITS_GUIDANCE_SCALE = {float(g)}`"
        + (
            " (the lowest Digits-FID of the sweep)."
            if g == best["guidance"]
            else f" (the sweep's lowest Digits-FID is at {best['guidance']:g})."
        )
        + " Guidance 1.0 disables classifier-free guidance (no null-class pass, half the cost). Stronger",
        "guidance trades recall (diversity) for precision: on digits the class-conditional model is already",
        "class-consistent without it. The null class is trained (10% label dropout), so guided sampling "
        "works",
        "for experiments that need the doubled CFG batch.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "python scripts/train_features.py     # feature CNN + reference_stats.npz (~20 s)",
        "python scripts/train_digits.py       # this folder + this card (training <= 38 min, evaluation ~20 "
        "min)",
        "```",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_card(folder: Path) -> None:
    info = json.loads((folder / "train_info.json").read_text())
    res_path = folder / "eval_results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else None
    (folder / "README.md").write_text(render_card(info, results, folder))
    print(f"wrote {folder / 'README.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(
        ap, out=DIGITS_DIR, iters=3600, batch_size=128, lr=1e-3, warmup=200, ema=0.999
    )
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--fp16", action="store_true", help="store the weights in float16")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=38.0,
        help="wall-clock budget of the training loop: the cosine decay follows the larger of the "
        "iteration and time fractions and training stops when either reaches 1 (0: no limit, "
        "exactly reproducible iteration count)",
    )
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-per-class", type=int, default=100)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="recompute every evaluation row")
    ap.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance scale of the sampler table (default: the best Digits-FID of the sweep)",
    )
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 1.25, 1.5, 2.0, 3.0])
    ap.add_argument("--sweep-steps", type=int, default=50)
    args = ap.parse_args()

    if not args.eval_only:
        train(args)
    if not args.skip_eval:
        evaluate(args)
    write_card(args.out)


if __name__ == "__main__":
    main()
