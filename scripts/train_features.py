"""Train the digits feature network used for Digits-FID, and write the reference stats.

    python scripts/train_features.py [--out src/smoothcache/zoo/digits_features]

Trains :class:`smoothcache.zoo.features.DigitsFeatureNet` on the TRAIN split of
:func:`smoothcache.zoo.data.digits_split` only (fixed seed, CPU), with small
random translations (+-1 px) and light Gaussian pixel noise as augmentation (no
flips: a flipped digit is another symbol).  Then it writes, into ``--out``:

* ``model.safetensors`` + ``config.json`` -- the network (loaded without pickle);
* ``reference_stats.npz`` -- ``mu``/``sigma`` of the train-split features, the
  train-split ``features`` (for precision/recall) and the ``heldout_features``
  (for the real-vs-real floor).

It prints the held-out accuracy (the target is >= 98%) and the floor.
"""

from __future__ import annotations

import os

# The CPU may be shared with other jobs: with OpenMP's default spin-waiting, two torch threads
# competing with another process run up to ~7x slower; passive waiting keeps them efficient.
# (Must be set before torch is imported.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from smoothcache.zoo.digits_data import SPLIT_SEED, digits_split
from smoothcache.zoo.digits_eval import DigitsEvaluator
from smoothcache.zoo.digits_net import FEATURES_DIR, DigitsFeatureNet
from smoothcache.zoo.metrics import feature_statistics

SEED = 1234


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift]^2 (pad with -1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


@torch.no_grad()
def accuracy(net: DigitsFeatureNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=FEATURES_DIR)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(SEED)
    split = digits_split()
    xtr, ytr, xte, yte = split
    print(f"train {len(ytr)} / held-out {len(yte)} images (split seed {SPLIT_SEED})")

    cfg = {"channels": [32, 64], "feature_dim": 64, "num_classes": 10, "image_size": 16}
    net = DigitsFeatureNet(channels=tuple(cfg["channels"]), feature_dim=cfg["feature_dim"],
                           num_classes=cfg["num_classes"], image_size=cfg["image_size"])
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (len(ytr) + args.batch_size - 1) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
    )
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=gen)
        total = 0.0
        for start in range(0, len(ytr), args.batch_size):
            idx = perm[start : start + args.batch_size]
            x = random_shift(xtr[idx], gen)
            x = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
            loss = F.cross_entropy(net(x), ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(
                f"epoch {epoch + 1:3d}  loss {total / len(ytr):.4f}  train acc {accuracy(net, xtr, ytr):.4f}"
                f"  ({time.time() - t0:.0f}s)",
                flush=True,
            )

    net.eval()
    test_acc = accuracy(net, xte, yte)
    print(f"held-out accuracy: {test_acc:.4f}")
    if test_acc < 0.98:
        print("WARNING: held-out accuracy below the 98% target")

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(args.out / "model.safetensors"))
    cfg.update(
        {
            "input_range": [-1.0, 1.0],
            "feature": "pre-activation of the penultimate linear layer",
            "trained_on": "smoothcache.zoo.data.digits_split() train split (1497 images)",
            "split_seed": SPLIT_SEED,
            "train_seed": SEED,
            "epochs": args.epochs,
            "heldout_accuracy": round(test_acc, 4),
        }
    )
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    with torch.no_grad():
        ftr = net.features(xtr).double().numpy()
        fte = net.features(xte).double().numpy()
    mu, sigma = feature_statistics(ftr)
    np.savez(
        args.out / "reference_stats.npz",
        mu=mu,
        sigma=sigma,
        features=ftr.astype(np.float32),
        heldout_features=fte.astype(np.float32),
    )

    ev = DigitsEvaluator(args.out)
    floor = ev.real_floor()
    print(
        "real-vs-real floor (held-out vs train reference): "
        + ", ".join(f"{k}={v:.4f}" for k, v in floor.items())
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
