"""Train the video evaluator's networks and write its reference statistics.

    python scripts/train_video_features.py [--out src/smoothcache/zoo/video_features]

Trains, on moving-digit videos of the TRAIN digits only (fixed seeds, CPU, 1 thread):

* the per-frame digit classifier (:class:`smoothcache.zoo.video_net.FrameClassifier`) on single frames;
* the 3-D CNN (:class:`smoothcache.zoo.video_net.VideoFeatureNet`) on whole clips, to name the digit
  and its velocity (24 classes).

Augmentation: light Gaussian pixel noise (sigma 0.05 in [-1, 1] units) and a random contrast
factor in [0.8, 1.0], so that the networks do not rely on pixel-perfect renders. Then it writes into
``--out``:

* ``frame_classifier.safetensors``, ``video_net.safetensors``, ``config.json`` (with held-out accuracies and
  the metrics of real held-out videos, and of the same videos with shuffled frames);
* ``reference_stats.npz`` -- ``mu`` / ``sigma`` of the features of 10,000 train videos, ``features`` of the
  first 2,000 (for precision/recall) and ``heldout_features`` of 500 held-out videos (the floor; the model
  card evaluates 500 generated videos too, so the finite-sample bias of the Fréchet distance matches).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: shared CPU, no spin-waiting

import argparse  # noqa: E402
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from smoothcache.zoo.digits_data import SPLIT_SEED
from smoothcache.zoo.metrics import feature_statistics
from smoothcache.zoo.video_data import CANVAS, NUM_FRAMES, VELOCITIES, make_videos, raw_digits_split
from smoothcache.zoo.video_eval import VideoEvaluator, motion_residuals
from smoothcache.zoo.video_net import (
    FEATURES_DIR,
    FRAME_WEIGHTS,
    VIDEO_WEIGHTS,
    FrameClassifier,
    VideoFeatureNet,
)

SEED = 4321
REFERENCE_SEED, REFERENCE_VIDEOS, STORED_FEATURES = 101, 10_000, 2_000
HELDOUT_SEED, HELDOUT_VIDEOS = 202, 500
CONFIG = {
    "num_classes": 10,
    "num_frames": NUM_FRAMES,
    "image_size": CANVAS,
    "frame": {"channels": [32, 64]},
    "video": {"channels": [16, 32, 64], "feature_dim": 64, "num_velocities": len(VELOCITIES)},
}


def velocity_index(velocities: torch.Tensor) -> torch.Tensor:
    """(N, 2) velocities -> (N,) index into VELOCITIES."""
    match = (velocities[:, None, :] == VELOCITIES[None]).all(dim=2)
    return match.int().argmax(dim=1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Videos/frames in [0, 1] -> [-1, 1] with random contrast and light noise."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    contrast = 0.8 + 0.2 * torch.rand(shape, generator=gen)
    x = x * contrast * 2.0 - 1.0
    return (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1.0, 1.0)


def train_net(net, step_fn, iters: int, lr: float, name: str) -> None:
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iters)
    net.train()
    t0, running = time.time(), 0.0
    for it in range(iters):
        loss = step_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (it + 1) % 250 == 0:
            print(
                f"{name}: iter {it + 1}/{iters}  loss {running / 250:.4f}  ({time.time() - t0:.0f}s)",
                flush=True,
            )
            running = 0.0
    net.eval()


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=FEATURES_DIR)
    ap.add_argument("--frame-iters", type=int, default=1500)
    ap.add_argument("--video-iters", type=int, default=2500)
    ap.add_argument("--batch-videos", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(SEED)
    split = raw_digits_split()
    print(
        f"train {len(split.train_labels)} / held-out {len(split.test_labels)} digits (split seed "
        f"{SPLIT_SEED})"
    )
    pool = (split.train_digits, split.train_labels)

    frame = FrameClassifier(channels=tuple(CONFIG["frame"]["channels"]))

    def frame_step() -> torch.Tensor:
        b = make_videos(*pool, args.batch_videos, gen)
        pick = torch.randint(NUM_FRAMES, (args.batch_videos, 2), generator=gen)  # two frames per video
        x = torch.cat([b.videos[torch.arange(args.batch_videos), pick[:, j]] for j in range(2)])
        return F.cross_entropy(frame(augment(x, gen)), b.labels.repeat(2), label_smoothing=0.05)

    video = VideoFeatureNet(
        channels=tuple(CONFIG["video"]["channels"]), feature_dim=CONFIG["video"]["feature_dim"]
    )

    def video_step() -> torch.Tensor:
        b = make_videos(*pool, args.batch_videos, gen)
        cls, vel = video(augment(b.videos, gen).transpose(1, 2))
        return F.cross_entropy(cls, b.labels, label_smoothing=0.05) + F.cross_entropy(
            vel, velocity_index(b.velocities), label_smoothing=0.05
        )

    train_net(frame, frame_step, args.frame_iters, 3e-3, "frame classifier")
    train_net(video, video_step, args.video_iters, 3e-3, "video net")

    # held-out accuracies on held-out digits
    held = make_videos(
        split.test_digits,
        split.test_labels,
        HELDOUT_VIDEOS,
        HELDOUT_SEED,
        classes=torch.arange(HELDOUT_VIDEOS) % 10,
    )
    x_held = held.videos * 2.0 - 1.0
    with torch.no_grad():
        frame_logits = batched(frame, x_held.flatten(0, 1)).reshape(HELDOUT_VIDEOS, NUM_FRAMES, -1)
        cls_logits = batched(lambda v: video(v)[0], x_held.transpose(1, 2))
        vel_logits = batched(lambda v: video(v)[1], x_held.transpose(1, 2))
    acc = {
        "frame_accuracy": float((frame_logits.argmax(2) == held.labels[:, None]).double().mean()),
        "video_class_accuracy": float((cls_logits.argmax(1) == held.labels).double().mean()),
        "video_velocity_accuracy": float(
            (vel_logits.argmax(1) == velocity_index(held.velocities)).double().mean()
        ),
    }
    print("held-out accuracies: " + ", ".join(f"{k}={v:.4f}" for k, v in acc.items()))

    args.out.mkdir(parents=True, exist_ok=True)
    for net, name in ((frame, FRAME_WEIGHTS), (video, VIDEO_WEIGHTS)):
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(args.out / name))

    ref = make_videos(*pool, REFERENCE_VIDEOS, REFERENCE_SEED)
    with torch.no_grad():
        f_ref = batched(video.features, (ref.videos * 2.0 - 1.0).transpose(1, 2)).double().numpy()
        f_held = batched(video.features, x_held.transpose(1, 2)).double().numpy()
    mu, sigma = feature_statistics(f_ref)
    np.savez(
        args.out / "reference_stats.npz",
        mu=mu,
        sigma=sigma,
        features=f_ref[:STORED_FEATURES].astype(np.float32),
        heldout_features=f_held.astype(np.float32),
    )

    cfg = dict(CONFIG)
    cfg.update(
        {
            "input_range": [-1.0, 1.0],
            "feature": "pre-activation of the video net's penultimate linear layer",
            "trained_on": "moving-digit videos of smoothcache.zoo.video_data.raw_digits_split() train digits "
            "(1497)",
            "split_seed": SPLIT_SEED,
            "train_seed": SEED,
            "frame_iters": args.frame_iters,
            "video_iters": args.video_iters,
            "batch_videos": args.batch_videos,
            "reference": {
                "seed": REFERENCE_SEED,
                "videos": REFERENCE_VIDEOS,
                "stored_features": STORED_FEATURES,
            },
            "heldout_set": {"seed": HELDOUT_SEED, "videos": HELDOUT_VIDEOS},
            "heldout_accuracy": {k: round(v, 4) for k, v in acc.items()},
            "heldout": {},
        }
    )
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    ev = VideoEvaluator(args.out)
    labels = held.labels
    real = ev.evaluate(held.videos, labels)
    shuffled = held.videos[:, torch.randperm(NUM_FRAMES, generator=torch.Generator().manual_seed(7))]
    shuf = ev.evaluate(shuffled, labels)
    noise = torch.rand(held.videos.shape, generator=torch.Generator().manual_seed(8))
    noise_m = ev.evaluate(noise, labels)
    cfg["heldout"] = {
        k: real[k] for k in ("class_consistency", "frame_accuracy", "motion_consistency", "motion_error")
    }
    cfg["heldout_shuffled_frames"] = {
        k: shuf[k] for k in ("fid", "class_consistency", "motion_consistency", "motion_error")
    }
    cfg["uniform_noise"] = {
        k: noise_m[k] for k in ("fid", "class_consistency", "motion_consistency", "motion_error")
    }
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    floor = VideoEvaluator(args.out).real_floor()
    print("real held-out floor: " + ", ".join(f"{k}={v:.4f}" for k, v in floor.items()))
    print(
        "held-out, shuffled frames: "
        + ", ".join(f"{k}={v:.4f}" for k, v in cfg["heldout_shuffled_frames"].items())
    )
    print("uniform noise: " + ", ".join(f"{k}={v:.4f}" for k, v in cfg["uniform_noise"].items()))
    print(f"motion error of real held-out videos: max {float(motion_residuals(held.videos).max()):.2e} px")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
