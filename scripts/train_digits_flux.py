"""Train the embedded class-conditional digits Flux and write its pipeline folder + model card.

    python scripts/train_digits_flux.py                 # train (<= --max-minutes), then evaluate
    python scripts/train_digits_flux.py --skip-eval     # train only
    python scripts/train_digits_flux.py --eval-only     # evaluate the saved folder, rewrite the model card

Training (fixed seeds, CPU, 2 threads): diffusers' ``FluxTransformer2DModel`` (4 double-stream + 8
single-stream blocks, width 64) in pixel space on the 16x16 upsampled sklearn digits (train split only,
[-1, 1]), one token per pixel; rectified flow (``x_t = (1 - s) x0 + s noise``, target ``noise - x0``, the
transformer called as FluxPipeline calls it with ``timestep = s``), noise levels logit-normal (SD3) or
uniform, then shifted by the scheduler's ``shift``; class tokens + pooled vector from
:class:`~smoothcache.zoo.digits_flux_model.FluxClassEmbedding` with 10% label dropout to the null class 10;
adaLN-Zero initialisation; AdamW with warmup + cosine decay; EMA of the weights (the EMA weights are saved).

Evaluation (the real pipeline, fixed seeds, scored by :class:`smoothcache.zoo.digits_eval.DigitsEvaluator`):
a guidance sweep at 28 Euler steps, then 4 / 8 / 14 / 28 / 50 steps at the chosen guidance. Partial results
are written after every row; rows already in ``eval_results.json`` with the same settings are reused.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: shared CPU, no spin-waiting

import argparse  # noqa: E402
import copy
import json
import math
import platform
import time

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler

from digits_flux_card import write_card  # noqa: E402  (scripts/digits_flux_card.py)
from smoothcache.zoo.digits_data import SPLIT_SEED, digits_split
from smoothcache.zoo.digits_flux_model import (
    DIGITS_FLUX_DIR,
    DigitsFluxPipeline,
    FluxClassEmbedding,
    build_transformer,
    digits_flux_pipeline,
    predict_velocity,
)
from training_args import add_sigma_arguments, add_training_arguments  # noqa: E402  (scripts/training_args.py)

SEED = 0
NUM_CLASSES = 10


def build() -> tuple[torch.nn.Module, FluxClassEmbedding]:
    transformer = build_transformer()
    # adaLN-Zero (DiT): every block starts as the identity and the output as the zero velocity
    for block in transformer.transformer_blocks:
        for linear in (block.norm1.linear, block.norm1_context.linear):
            torch.nn.init.zeros_(linear.weight)
            torch.nn.init.zeros_(linear.bias)
    for block in transformer.single_transformer_blocks:
        torch.nn.init.zeros_(block.norm.linear.weight)
        torch.nn.init.zeros_(block.norm.linear.bias)
    for layer in (transformer.norm_out.linear, transformer.proj_out):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    embedder = FluxClassEmbedding(num_classes=NUM_CLASSES)
    torch.nn.init.normal_(embedder.tokens.weight, std=1.0)
    torch.nn.init.normal_(embedder.pooled.weight, std=1.0)
    return transformer, embedder


class Denoiser(torch.nn.Module):
    """The two trained components as one module (one optimiser, one EMA)."""

    def __init__(self, transformer, embedder):
        super().__init__()
        self.transformer, self.embedder = transformer, embedder

    def forward(self, x_t, sigma, labels):
        tokens, pooled = self.embedder(labels)
        return predict_velocity(self.transformer, x_t, sigma, tokens, pooled)


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over ``args.warmup`` iterations, then cosine decay over ``progress`` in [0, 1]."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    warm = args.warmup / args.iters
    p = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1 - warm)))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def sample_sigmas(n: int, gen: torch.Generator, args) -> torch.Tensor:
    """Noise levels in (0, 1): stratified uniform or logit-normal (SD3), then the scheduler's time shift."""
    if args.sigma_sampling == "uniform":
        u = (torch.rand(1, generator=gen) + torch.arange(n) / n) % 1.0
        u = u[torch.randperm(n, generator=gen)].clamp(1e-4, 1 - 1e-4)
    else:
        u = torch.sigmoid(args.sigma_mean + args.sigma_std * torch.randn(n, generator=gen))
    return args.shift * u / (1 + (args.shift - 1) * u)


def train(args) -> dict:
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(SEED)
    split = digits_split()
    x_train, y_train = split.train_images, split.train_labels
    n = len(y_train)

    model = Denoiser(*build())
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Flux 4 double + 8 single blocks, hidden 64, {n_params / 1e6:.2f}M params", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    model.train()
    perm, cursor = torch.randperm(n, generator=gen), 0
    t0 = time.time()
    running, done, stopped_early, curve = 0.0, 0, False, []
    for step in range(args.iters):
        # Progress is the larger of the iteration and the wall-clock fraction, so on a shared (slower) CPU
        # the cosine decay still completes within --max-minutes.
        elapsed = time.time() - t0
        progress = max(step / args.iters, elapsed / (args.max_minutes * 60) if args.max_minutes > 0 else 0.0)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at iteration {step}; stopping", flush=True)
            stopped_early = True
            break
        if cursor + args.batch_size > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor:cursor + args.batch_size]
        cursor += args.batch_size
        x0, y = x_train[idx], y_train[idx].clone()
        y[torch.rand(len(y), generator=gen) < args.label_dropout] = NUM_CLASSES  # null class
        noise = torch.randn(x0.shape, generator=gen)
        sigma = sample_sigmas(len(y), gen, args)
        s = sigma.view(-1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        lr = lr_at(progress, step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.mse_loss(model(x_t, sigma, y), noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
        running += loss.item()
        done = step + 1
        if done % args.log_every == 0:
            elapsed = time.time() - t0
            curve.append({"iteration": done, "loss": round(running / args.log_every, 5),
                          "minutes": round(elapsed / 60, 2)})
            print(f"iter {done:5d}/{args.iters}  loss {running / args.log_every:.4f}  lr {lr:.2e}  "
                  f"{elapsed / done:.3f}s/it  elapsed {elapsed / 60:.1f} min", flush=True)
            running = 0.0
    wall = time.time() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=args.shift)
    DigitsFluxPipeline(transformer=ema.transformer, class_embedder=ema.embedder,
                       scheduler=scheduler).save_pretrained(str(args.out), safe_serialization=True)
    info = {
        "seed": SEED, "split_seed": SPLIT_SEED, "train_images": n, "iterations": done,
        "planned_iterations": args.iters, "stopped_early": stopped_early, "batch_size": args.batch_size,
        "epochs": round(done * args.batch_size / n, 1), "lr": args.lr, "warmup": args.warmup,
        "min_lr_frac": args.min_lr_frac, "weight_decay": args.weight_decay, "ema": args.ema,
        "label_dropout": args.label_dropout, "sigma_sampling": args.sigma_sampling,
        "sigma_mean": args.sigma_mean, "sigma_std": args.sigma_std, "shift": args.shift, "params": n_params,
        "wall_seconds": round(wall, 1), "seconds_per_iteration": round(wall / max(done, 1), 3),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
                   "CPU shared with other jobs",
        "loss_curve": curve,
    }
    (args.out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"trained {done} iterations in {wall / 60:.1f} min; wrote {args.out}", flush=True)
    return info


# ------------------------------------------------------------------ evaluation
def generate(pipe, labels: list[int], steps: int, guidance: float, seed: int, batch: int) -> torch.Tensor:
    out = []
    for b, start in enumerate(range(0, len(labels), batch)):
        g = torch.Generator().manual_seed(seed + b)
        out.append(pipe(class_labels=labels[start:start + batch], num_inference_steps=steps,
                        guidance_scale=guidance, generator=g, output_type="pt").images.float().cpu())
    return torch.cat(out)


def evaluate(args) -> dict:
    from smoothcache.zoo import digits_evaluator

    torch.set_num_threads(args.threads)
    ev = digits_evaluator()
    pipe = digits_flux_pipeline(folder=args.out)
    split = digits_split()
    train_flat = split.train_images.flatten(1)
    n_floor = len(split.test_labels)

    def nn_dist(images_m11: torch.Tensor) -> float:  # memorisation check (nearest train image)
        return float(torch.cdist(images_m11.flatten(1), train_flat).min(dim=1).values.median())

    res_path = args.out / "eval_results.json"
    previous = json.loads(res_path.read_text()) if res_path.is_file() and not args.fresh else {}
    results = {"floor": {**ev.real_floor(), "nn_train_dist": nn_dist(split.test_images)}, "runs": []}
    references: dict[tuple[float, int, int], torch.Tensor] = {}

    def run(steps: int, guidance: float, per_class: int, seed: int, keep: bool = False) -> dict:
        """One row; ``keep``: the samples are the reference of the fewer-step rows (regenerated if reused)."""
        labels = [i % NUM_CLASSES for i in range(NUM_CLASSES * per_class)]
        key = (guidance, seed, len(labels))
        wanted = (steps, guidance, len(labels), seed)

        def same(row: dict) -> bool:
            return (row["steps"], row["guidance"], row["samples"], row["seed"]) == wanted

        # the sweep's row at the chosen guidance may be a row of the steps table; rows of an earlier run are
        # reused, except a fewer-step row without its distance to reference samples now at hand
        found = next((r for r in results["runs"] if same(r)), None)
        in_session = found is not None
        if found is None:
            found = next((r for r in previous.get("runs", []) if same(r) and not (
                key in references and steps != args.reference_steps and "rmse_vs_reference" not in r)), None)
        if found is not None:
            if keep and key not in references:
                references[key] = generate(pipe, labels, steps, guidance, seed, args.eval_batch)
            if not in_session:
                results["runs"].append(found)
                print(f"{steps:3d} steps g={guidance:<4} n={len(labels)}: reused fid {found['fid']:.3f}")
            return found
        t0 = time.time()
        images = generate(pipe, labels, steps, guidance, seed, args.eval_batch)
        secs = time.time() - t0
        row = {"steps": steps, "guidance": guidance, "seed": seed, "samples": len(labels),
               "seconds": round(secs, 1), **ev.evaluate(images, labels),
               "nn_train_dist": nn_dist(images * 2 - 1)}
        if len(labels) > n_floor:  # like-for-like with the 300-image floor (FD is biased upwards on small N)
            row["fid_300"] = ev.evaluate(images[:n_floor], labels[:n_floor])["fid"]
        if steps == args.reference_steps:
            references[key] = images
        elif key in references:  # how far fewer steps land from the reference-step samples of the same noise
            row["rmse_vs_reference"] = float((images - references[key]).pow(2).mean().sqrt())
        results["runs"].append(row)
        res_path.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive an interruption
        print(f"{steps:3d} steps g={guidance:<4} seed {seed} n={len(labels)}: "
              + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
        return row

    print("floor: " + ", ".join(f"{k}={v:.3f}" for k, v in results["floor"].items()), flush=True)
    if args.guidance is not None:
        guidance = args.guidance
    else:
        sweep = [run(args.reference_steps, g, args.sweep_per_class, args.eval_seed) for g in args.sweep]
        guidance = min(sweep, key=lambda r: r["fid"])["guidance"]
    print(f"guidance scale for the steps table: {guidance}", flush=True)
    results.update(guidance=guidance, reference_steps=args.reference_steps,
                   samples=NUM_CLASSES * args.eval_per_class,
                   sweep_samples=NUM_CLASSES * args.sweep_per_class)
    # the reference row first (the fewer-step rows are compared with its samples), then fewest steps first
    order = [args.reference_steps] + sorted(s for s in set(args.steps) if s != args.reference_steps)
    for steps in order:
        run(steps, guidance, args.eval_per_class, args.eval_seed, keep=steps == args.reference_steps)
    res_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(
        ap, out=DIGITS_FLUX_DIR, iters=2400, batch_size=32, lr=1e-3, warmup=100, ema=0.998
    )
    add_sigma_arguments(ap, "logit-normal")
    ap.add_argument("--shift", type=float, default=1.0,
                    help="time shift of the training noise levels and of the FlowMatchEulerDiscreteScheduler")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=45.0,
                    help="wall-clock budget of the training loop: the cosine decay follows the larger of "
                         "the iteration and time fractions and training stops when either reaches 1 "
                         "(0: no limit)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-per-class", type=int, default=100, help="samples per class of the steps table")
    ap.add_argument("--sweep-per-class", type=int, default=30, help="samples per class of the guidance sweep")
    ap.add_argument("--eval-batch", type=int, default=250)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="recompute every evaluation row")
    ap.add_argument("--guidance", type=float, default=None,
                    help="guidance scale of the steps table (default: the best Digits-FID of the sweep)")
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--reference-steps", type=int, default=28)
    ap.add_argument("--steps", type=int, nargs="*", default=[4, 8, 14, 28, 50])
    args = ap.parse_args()

    if not args.eval_only:
        train(args)
    if not args.skip_eval:
        evaluate(args)
    write_card(args.out)


if __name__ == "__main__":
    main()
