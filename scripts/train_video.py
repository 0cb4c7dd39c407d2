"""Train the embedded moving-digits video DiT and write its pipeline folder + model card.

    python scripts/train_video.py                 # train (<= --max-minutes), then evaluate (~30 min)
    python scripts/train_video.py --skip-eval     # train only
    python scripts/train_video.py --eval-only     # evaluate the saved folder, rewrite the model card

Training (fixed seed, CPU, 1 thread by default): a ``LatteTransformer3DModel`` in pixel space on moving-digit
videos of the train digits (:mod:`smoothcache.zoo.video_data`, a fresh deterministic batch every iteration),
rectified flow (``x_t = (1 - s) x0 + s noise``, the transformer predicts ``noise - x0`` at ``timestep = 1000
s``, the convention of diffusers' ``FlowMatchEulerDiscreteScheduler``), class tokens from
:class:`~smoothcache.zoo.video_model.VideoClassEmbedding` with 10% label dropout to the null class,
AdamW with warmup + cosine decay, EMA of the weights (the EMA weights are saved).

Evaluation (real pipeline, fixed seeds, scored by :class:`smoothcache.zoo.video_eval.VideoEvaluator`): a
    guidance
sweep at 30 steps (100 videos each), then 30 / 8 / 4 steps at the chosen guidance (300 videos each, same
seeds; PSNR of the fewer-step videos against the 30-step ones). Partial results are written after every row.
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
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel, FlowMatchEulerDiscreteScheduler, LatteTransformer3DModel

from smoothcache.zoo.digits_data import SPLIT_SEED
from smoothcache.zoo.video_data import CANVAS, NUM_FRAMES, make_videos, raw_digits_split
from smoothcache.zoo.video_model import (
    VIDEO_DIR,
    MovingDigitsPipeline,
    VideoClassEmbedding,
    denoise,
    video_pipeline,
)
from training_args import add_sigma_arguments, add_training_arguments  # noqa: E402  (scripts/training_args.py)
from video_card import write_card  # noqa: E402  (scripts/video_card.py)

SEED = 0
NUM_CLASSES = 10


def build(args) -> tuple[torch.nn.Module, VideoClassEmbedding]:
    if args.arch == "cogvideox":
        # full 3-D attention over [class tokens; all frames' patches], 3-D rotary positions, adaLN-zero-style
        # timestep modulation; no temporal compression (temporal_compression_ratio=1, sample_frames = frames)
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=args.heads,
            attention_head_dim=args.hidden // args.heads,
            in_channels=1,
            out_channels=1,
            time_embed_dim=args.hidden,
            text_embed_dim=args.caption_dim,
            num_layers=args.layers,
            sample_width=CANVAS,
            sample_height=CANVAS,
            sample_frames=NUM_FRAMES,
            patch_size=args.patch,
            temporal_compression_ratio=1,
            max_text_seq_length=args.tokens,
            use_rotary_positional_embeddings=True,
        )
    else:
        transformer = LatteTransformer3DModel(
            num_attention_heads=args.heads,
            attention_head_dim=args.hidden // args.heads,
            in_channels=1,
            out_channels=1,
            num_layers=args.layers,
            cross_attention_dim=args.hidden,
            attention_bias=True,
            sample_size=CANVAS,
            patch_size=args.patch,
            activation_fn="gelu-approximate",
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=args.caption_dim,
            video_length=NUM_FRAMES,
        )
    # start as the zero velocity (DiT / PixArt zero-initialise the output layer)
    torch.nn.init.zeros_(transformer.proj_out.weight)
    torch.nn.init.zeros_(transformer.proj_out.bias)
    embedder = VideoClassEmbedding(
        num_classes=NUM_CLASSES, num_tokens=args.tokens, embed_dim=args.caption_dim
    )
    return transformer, embedder


class Denoiser(torch.nn.Module):
    """The two trained components as one module (one optimiser, one EMA)."""

    def __init__(self, transformer, embedder):
        super().__init__()
        self.transformer, self.embedder = transformer, embedder

    def forward(self, x_t, t, labels):
        return denoise(self.transformer, x_t, t, self.embedder(labels))


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over ``args.warmup`` iterations, then cosine decay over ``progress`` in [0, 1]."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    warm = args.warmup / args.iters
    p = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1 - warm)))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def sample_sigmas(n: int, gen: torch.Generator, args) -> torch.Tensor:
    """Noise levels in (0, 1): stratified uniform, or logit-normal (SD3) with mean / std
    ``args.sigma_mean/std``."""
    if args.sigma_sampling == "uniform":
        u = (torch.rand(1, generator=gen) + torch.arange(n) / n) % 1.0
        return u[torch.randperm(n, generator=gen)].clamp(1e-4, 1 - 1e-4)
    return torch.sigmoid(args.sigma_mean + args.sigma_std * torch.randn(n, generator=gen))


def train(args) -> dict:
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(SEED)
    split = raw_digits_split()
    pool = (split.train_digits, split.train_labels)

    model = Denoiser(*build(args))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.arch}, hidden {args.hidden}, {args.layers} layers, patch {args.patch}, "
        f"{n_params / 1e6:.2f}M params",
        flush=True,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    model.train()
    t0 = time.time()
    running, done, stopped_early, curve = 0.0, 0, False, []
    for step in range(args.iters):
        elapsed = time.time() - t0
        progress = max(step / args.iters, elapsed / (args.max_minutes * 60) if args.max_minutes > 0 else 0.0)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at iteration {step}; stopping", flush=True)
            stopped_early = True
            break
        batch = make_videos(*pool, args.batch_size, gen)
        x0 = batch.videos * 2.0 - 1.0  # (B, F, 1, H, W) in [-1, 1]
        y = batch.labels.clone()
        y[torch.rand(len(y), generator=gen) < args.label_dropout] = NUM_CLASSES  # null class
        noise = torch.randn(x0.shape, generator=gen)
        sigma = sample_sigmas(len(y), gen, args)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        lr = lr_at(progress, step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        pred = model(x_t, sigma * 1000.0, y)
        if args.prediction == "sample":  # x-prediction, loss on the implied velocity (JiT), sigma floored
            loss = F.mse_loss((x_t - pred) / s.clamp(min=args.sigma_floor), noise - x0)
        else:
            loss = F.mse_loss(pred, noise - x0)
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
            curve.append(
                {
                    "iteration": done,
                    "loss": round(running / args.log_every, 5),
                    "minutes": round(elapsed / 60, 2),
                }
            )
            print(
                f"iter {done:5d}/{args.iters}  loss {running / args.log_every:.4f}  lr {lr:.2e}  "
                f"{elapsed / done:.3f}s/it  elapsed {elapsed / 60:.1f} min",
                flush=True,
            )
            running = 0.0
    wall = time.time() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    pipe = MovingDigitsPipeline(
        transformer=ema.transformer,
        class_embedder=ema.embedder,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=args.shift),
        prediction_type=args.prediction,
    )
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    if args.raw_out is not None:
        MovingDigitsPipeline(
            transformer=model.transformer,
            class_embedder=model.embedder,
            scheduler=pipe.scheduler,
            prediction_type=args.prediction,
        ).save_pretrained(str(args.raw_out), safe_serialization=True)
    info = {
        "seed": SEED,
        "split_seed": SPLIT_SEED,
        "train_digits": len(split.train_labels),
        "iterations": done,
        "planned_iterations": args.iters,
        "stopped_early": stopped_early,
        "batch_size": args.batch_size,
        "videos_seen": done * args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "min_lr_frac": args.min_lr_frac,
        "weight_decay": args.weight_decay,
        "ema": args.ema,
        "label_dropout": args.label_dropout,
        "sigma_sampling": args.sigma_sampling,
        "sigma_mean": args.sigma_mean,
        "sigma_std": args.sigma_std,
        "prediction": args.prediction,
        "sigma_floor": args.sigma_floor,
        "shift": args.shift,
        "arch": args.arch,
        "hidden": args.hidden,
        "heads": args.heads,
        "layers": args.layers,
        "patch": args.patch,
        "class_tokens": args.tokens,
        "caption_dim": args.caption_dim,
        "params": n_params,
        "wall_seconds": round(wall, 1),
        "seconds_per_iteration": round(wall / max(done, 1), 3),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
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
        out.append(
            pipe(
                class_labels=labels[start : start + batch],
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=g,
                output_type="pt",
            )
            .frames.float()
            .cpu()
        )
    return torch.cat(out)


def evaluate(args) -> dict:
    from smoothcache.zoo.video_eval import video_evaluator

    torch.set_num_threads(args.threads)
    ev = video_evaluator()
    pipe = video_pipeline() if args.out.resolve() == VIDEO_DIR.resolve() else video_pipeline(folder=args.out)
    labels = [i % NUM_CLASSES for i in range(NUM_CLASSES * args.eval_per_class)]
    sweep_labels = [
        i % NUM_CLASSES for i in range(NUM_CLASSES * (args.sweep_per_class or args.eval_per_class))
    ]
    results = {
        "samples": len(labels),
        "sweep_samples": len(sweep_labels),
        "floor": ev.real_floor(),
        "runs": [],
    }
    res_path = args.out / "eval_results.json"
    references: dict[tuple[float, int], torch.Tensor] = {}

    def run(steps: int, guidance: float, seed: int, videos: list[int]) -> dict:
        t0 = time.time()
        frames = generate(pipe, videos, steps, guidance, seed, args.eval_batch)
        secs = time.time() - t0
        row = {
            "steps": steps,
            "guidance": guidance,
            "seed": seed,
            "samples": len(videos),
            "seconds": round(secs, 1),
            **ev.evaluate(frames, videos),
        }
        key = (guidance, seed, len(videos))
        if steps == args.reference_steps:
            references[key] = frames
        elif key in references:
            row["psnr_vs_reference"] = ev.psnr(frames, references[key])
        results["runs"].append(row)
        res_path.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive an interruption
        print(
            f"{steps:3d} steps g={guidance:<4} seed {seed} n={len(videos)}: "
            + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )
        return row

    print("floor: " + ", ".join(f"{k}={v:.3f}" for k, v in results["floor"].items()), flush=True)
    if args.guidance is not None:
        guidance = args.guidance
    else:
        sweep = [run(args.reference_steps, g, args.eval_seed, sweep_labels) for g in args.sweep]
        guidance = min(sweep, key=lambda r: r["fid"])["guidance"]
    print(f"guidance scale for the steps table: {guidance}", flush=True)
    results.update(guidance=guidance, reference_steps=args.reference_steps)
    for steps in sorted(set(args.steps) | {args.reference_steps}, reverse=True):
        if not any(
            r["steps"] == steps and r["guidance"] == guidance and r["samples"] == len(labels)
            for r in results["runs"]
        ):
            run(steps, guidance, args.eval_seed, labels)
    if args.seed_check:  # seed-to-seed spread of the headline numbers
        for steps in (args.reference_steps, min(args.steps)):
            run(steps, guidance, args.eval_seed + 1000, labels)
    res_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(
        ap, out=VIDEO_DIR, iters=6000, batch_size=16, lr=2e-3, warmup=100, ema=0.999
    )
    add_sigma_arguments(ap, "uniform")
    ap.add_argument(
        "--prediction",
        choices=("velocity", "sample"),
        default="velocity",
        help="the transformer predicts the flow velocity or the clean clip x0",
    )
    ap.add_argument(
        "--sigma-floor",
        type=float,
        default=0.05,
        help="x-prediction: the velocity loss divides by max(sigma, this)",
    )
    ap.add_argument(
        "--shift", type=float, default=1.0, help="FlowMatchEulerDiscreteScheduler shift at sampling"
    )
    ap.add_argument("--arch", choices=("cogvideox", "latte"), default="latte")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--layers", type=int, default=3, help="spatial blocks (as many temporal blocks)")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=4, help="class tokens for the cross-attention")
    ap.add_argument("--caption-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=75.0,
        help="wall-clock budget of the training loop: the cosine decay follows the larger of the "
        "iteration and time fractions and training stops when either reaches 1 (0: no limit)",
    )
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument(
        "--raw-out",
        type=Path,
        default=None,
        help="also save the raw (non-EMA) weights as a pipeline folder here (for comparison)",
    )
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-per-class", type=int, default=30)
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument(
        "--sweep-per-class", type=int, default=10, help="videos per class of the guidance sweep (default 10)"
    )
    ap.add_argument(
        "--seed-check", action="store_true", help="repeat the first and last steps rows with seed +1000"
    )
    ap.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance scale of the steps table (default: the best FID of the sweep)",
    )
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 2.0, 4.0])
    ap.add_argument("--reference-steps", type=int, default=30)
    ap.add_argument("--steps", type=int, nargs="*", default=[30, 8, 4])
    args = ap.parse_args()

    if not args.eval_only:
        train(args)
    if not args.skip_eval:
        evaluate(args)
        write_card(args.out)


if __name__ == "__main__":
    main()
