"""Train the embedded spoken-digits audio DiT and write its pipeline folder, evaluation and model card.

    python scripts/make_audio_data.py              # once: espeak-ng data in /work/data/audio (~1 min)
    python scripts/train_audio_features.py         # once: the evaluator's classifier (~15 min)
    python scripts/train_audio.py                  # train (<= --max-minutes), then evaluate and write the
    card python scripts/train_audio.py --skip-eval      # train only
    python scripts/train_audio.py --eval-only      # evaluate the saved folder, rewrite the model card

Training (fixed seed, CPU, 1 thread): a ``StableAudioDiTModel`` on standardised log-magnitude
spectrograms (:class:`smoothcache.zoo.audio_spectrogram.SpectrogramAutoencoder`) of the train split,
v-prediction in continuous time with the cosine schedule of Stable Audio (``alpha = cos(pi t / 2)``,
``sigma = sin(pi t / 2)``, the transformer sees ``t``), class tokens from a learned
:class:`~smoothcache.zoo.audio_model.ClassProjectionModel` with 10% label dropout to the null class,
AdamW with warmup + cosine decay, EMA of the weights (the EMA weights are saved).  Evaluation and card
rendering live in ``scripts/audio_card.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPU: no OpenMP spin-waiting

import argparse  # noqa: E402
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DPMSolverMultistepScheduler, StableAudioDiTModel
from diffusers.models.embeddings import get_1d_rotary_pos_embed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_card import evaluate, write_card  # noqa: E402
from make_audio_data import DEFAULT_OUT, load_split  # noqa: E402
from smoothcache.zoo.audio_model import AUDIO_DIR, AudioDiTPipeline, ClassProjectionModel  # noqa: E402
from smoothcache.zoo.audio_spectrogram import SpectrogramAutoencoder  # noqa: E402
from training_args import add_training_arguments  # noqa: E402

SEED = 0
NUM_CLASSES = 10
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                 algorithm_type="sde-dpmsolver++", solver_order=3)


def build(args, vae: SpectrogramAutoencoder) -> tuple[StableAudioDiTModel, ClassProjectionModel]:
    model = StableAudioDiTModel(
        sample_size=vae.latent_length,
        in_channels=vae.latent_channels,
        out_channels=vae.latent_channels,
        num_layers=args.layers,
        attention_head_dim=args.hidden // args.heads,
        num_attention_heads=args.heads,
        num_key_value_attention_heads=max(1, args.heads // 2),
        cross_attention_dim=args.hidden,
        time_proj_dim=args.time_proj_dim,
        global_states_input_dim=args.hidden,
        cross_attention_input_dim=args.hidden,
    )
    proj = ClassProjectionModel(
        num_classes=NUM_CLASSES,
        num_tokens=args.tokens,
        cross_attention_input_dim=args.hidden,
        global_states_input_dim=args.hidden,
    )
    return model, proj


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over ``args.warmup`` iterations, then cosine decay over ``progress`` in [0, 1]."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    warm = args.warmup / args.iters
    p = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1 - warm)))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def encode_split(vae: SpectrogramAutoencoder, audio: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([vae.encode(audio[i : i + batch, None]).latents for i in range(0, len(audio), batch)])


def train(args) -> dict:
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(SEED)
    audio, labels = map(torch.from_numpy, load_split(args.data / "train.npz"))
    vae = SpectrogramAutoencoder()
    kept = vae.fit(audio[:, None])
    x_all = encode_split(vae, audio)
    n = len(labels)
    print(
        f"data: {n} train clips -> latents {tuple(x_all.shape[1:])} ({kept:.1%} of the token variance), "
        f"std {x_all.std():.3f}",
        flush=True,
    )

    model, proj = build(args, vae)
    modules = torch.nn.ModuleList([model, proj])
    ema = copy.deepcopy(modules).eval().requires_grad_(False)
    trainable = [p for p in modules.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in modules.parameters())
    print(
        f"model: hidden {args.hidden}, {args.layers} blocks, {args.heads} heads, {n_params / 1e6:.2f}M "
        "params",
        flush=True,
    )
    rotary = get_1d_rotary_pos_embed(
        args.hidden // args.heads // 2, vae.latent_length + 1, use_real=True, repeat_interleave_real=False
    )
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    modules.train()
    perm, cursor = torch.randperm(n, generator=gen), 0
    t0, running, done, stopped_early, curve = time.time(), 0.0, 0, False, []
    for step in range(args.iters):
        if cursor + args.batch_size > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        x0, y = x_all[idx], labels[idx].clone()
        y[torch.rand(len(y), generator=gen) < args.label_dropout] = NUM_CLASSES  # null class
        noise = torch.randn(x0.shape, generator=gen)
        # stratified continuous time in (0, 1): lower-variance coverage of the noise levels
        t = ((torch.rand(1, generator=gen) + torch.arange(len(y)) / len(y)) % 1.0)[
            torch.randperm(len(y), generator=gen)
        ]
        t = t.clamp(1e-4, 1 - 1e-4)
        alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
        x_t = alpha * x0 + sigma * noise
        target = alpha * noise - sigma * x0

        elapsed = time.time() - t0
        progress = max(step / args.iters, elapsed / (args.max_minutes * 60) if args.max_minutes > 0 else 0.0)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at iteration {step}; stopping", flush=True)
            stopped_early = True
            break
        lr = lr_at(progress, step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        enc, glob = proj(y)
        pred = model(
            x_t, timestep=t, encoder_hidden_states=enc, global_hidden_states=glob, rotary_embedding=rotary
        ).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(modules.parameters()), 1 - decay)
        running += loss.item()
        done = step + 1
        if done % args.log_every == 0 or done == args.iters:
            elapsed = time.time() - t0
            curve.append([done, round(running / args.log_every, 4), round(elapsed / 60, 2)])
            print(
                f"iter {done:5d}/{args.iters}  loss {running / args.log_every:.4f}  lr {lr:.2e}  "
                f"{elapsed / done:.3f}s/it  elapsed {elapsed / 60:.1f} min",
                flush=True,
            )
            running = 0.0
    wall = time.time() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    pipe = AudioDiTPipeline(
        transformer=ema[0],
        projection_model=ema[1],
        vae=vae,
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER),
    )
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    info = {
        "seed": SEED,
        "train_clips": n,
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
        "class_tokens": args.tokens,
        "time_proj_dim": args.time_proj_dim,
        "params": n_params,
        "latent_shape": list(x_all.shape[1:]),
        "latent_variance_kept": round(kept, 4),
        "wall_seconds": round(wall, 1),
        "seconds_per_iteration": round(wall / max(done, 1), 3),
        "loss_curve": curve,
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
    }
    (args.out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"trained {done} iterations in {wall / 60:.1f} min; wrote {args.out}", flush=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_OUT)
    add_training_arguments(
        ap, out=AUDIO_DIR, iters=8000, batch_size=64, lr=5e-4, warmup=300, ema=0.999
    )
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=4, help="cross-attention tokens per class")
    ap.add_argument("--time-proj-dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=65.0,
        help="wall-clock budget of the training loop (the cosine decay follows the larger of the "
        "iteration and time fractions; 0: no limit)",
    )
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-per-class", type=int, default=30, help="clips per word in the steps table")
    ap.add_argument("--sweep-per-class", type=int, default=50, help="clips per word in the guidance sweep")
    ap.add_argument("--eval-batch", type=int, default=250)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="recompute the guidance sweep too")
    ap.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance scale of the steps table (default: the best FID of the sweep)",
    )
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 2.0])
    ap.add_argument("--steps", type=int, nargs="*", default=[10, 25, 50, 100])
    args = ap.parse_args()
    if not args.eval_only:
        train(args)
    if not args.skip_eval:
        evaluate(args)
    write_card(args.out)


if __name__ == "__main__":
    main()
