"""The arguments every training script of the embedded models shares (optimizer, EMA, label dropout, runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_training_arguments(
    ap: argparse.ArgumentParser,
    *,
    out: Path,
    iters: int,
    batch_size: int,
    lr: float,
    warmup: int,
    ema: float,
) -> None:
    """Output folder, iterations, batch, AdamW with cosine decay after a warm-up, EMA and label dropout."""
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--min-lr-frac", type=float, default=0.02)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=ema)
    ap.add_argument("--label-dropout", type=float, default=0.1)


def add_sigma_arguments(ap: argparse.ArgumentParser, sampling: str) -> None:
    """How the training noise levels of a rectified flow are drawn."""
    ap.add_argument("--sigma-sampling", choices=("uniform", "logit-normal"), default=sampling)
    ap.add_argument("--sigma-mean", type=float, default=0.0, help="logit-normal mean of the noise level")
    ap.add_argument("--sigma-std", type=float, default=1.0, help="logit-normal std of the noise level")
