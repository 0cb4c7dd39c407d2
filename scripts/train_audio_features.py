"""Train the spoken-digit classifier of the audio evaluator and write its reference statistics.

    python scripts/make_audio_data.py            # once: the espeak-ng data in /work/data/audio
    python scripts/train_audio_features.py       # -> src/smoothcache/zoo/audio_features/ (~10 min, 1 thread)

The classifier (:class:`smoothcache.zoo.audio_features.AudioClassifier`) sees log-mel images of the train
split only: each clip as synthesised and its Griffin-Lim resynthesis through the audio pipeline's
spectrogram autoencoder (so that it judges the word, not the vocoder), with random time shifts.
``reference_stats.npz`` holds the mean / covariance of the train features, every third train feature vector
(precision / recall), and the features
and labels of the held-out voices, as synthesised and resynthesised (the two floors of the evaluator).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_audio_data import DEFAULT_OUT, load_split  # noqa: E402
from smoothcache.zoo.audio_features import (  # noqa: E402
    AUDIO_FEATURES_DIR,
    N_MELS,
    TOP_DB,
    AudioClassifier,
    log_mel,
)
from smoothcache.zoo.audio_spectrogram import NUM_SAMPLES, SAMPLE_RATE, SpectrogramAutoencoder  # noqa: E402

SEED = 0
CHANNELS = (16, 32, 64)
FEATURE_DIM = 64


def resynthesise(
    audio: torch.Tensor, ae: SpectrogramAutoencoder, cache: Path, batch: int = 500
) -> torch.Tensor:
    """Round trip through the pipeline's spectrogram autoencoder (projection + Griffin-Lim).

    The result is cached in ``cache`` (int16 PCM, keyed by the autoencoder's config and buffers).
    """
    digest = hashlib.sha256(b"".join(b.numpy().tobytes() for b in ae.buffers())).hexdigest()
    key = json.dumps({k: v for k, v in ae.config.items() if not k.startswith("_")}, sort_keys=True) + digest
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key and len(z["audio"]) == len(audio):
                return torch.from_numpy(z["audio"].astype(np.float32) / 32767.0)
    out = torch.cat([ae(audio[i : i + batch, None]).sample[:, 0] for i in range(0, len(audio), batch)])
    np.savez(cache, audio=np.round(out.numpy() * 32767).astype(np.int16), key=np.array(key))
    return out


def mels(audio: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([log_mel(audio[i : i + batch]) for i in range(0, len(audio), batch)])


def shift(x: torch.Tensor, max_frames: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each log-mel image in time by up to +-max_frames, filling with silence (-1)."""
    out = torch.full_like(x, -1.0)
    t = x.shape[-1]
    for i, s in enumerate(torch.randint(-max_frames, max_frames + 1, (len(x),), generator=gen).tolist()):
        if s >= 0:
            out[i, ..., s:] = x[i, ..., : t - s]
        else:
            out[i, ..., : t + s] = x[i, ..., -s:]
    return out


@torch.no_grad()
def features_and_preds(
    net: AudioClassifier, x: torch.Tensor, batch: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    feats = torch.cat([net.features(x[i : i + batch]) for i in range(0, len(x), batch)])
    return feats, net.head(feats).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--out", type=Path, default=AUDIO_FEATURES_DIR)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()

    train_audio, train_labels = map(torch.from_numpy, load_split(args.data / "train.npz"))
    held_audio, held_labels = map(torch.from_numpy, load_split(args.data / "heldout.npz"))
    ae = SpectrogramAutoencoder()
    ae.fit(train_audio[:, None])  # deterministic: the same projection as scripts/train_audio.py fits
    train_rs = resynthesise(train_audio, ae, args.data / "train_resynth.npz")
    held_rs = resynthesise(held_audio, ae, args.data / "heldout_resynth.npz")
    x_train, x_train_rs = mels(train_audio), mels(train_rs)
    x_held, x_held_rs = mels(held_audio), mels(held_rs)
    print(
        f"data: {len(x_train)} train / {len(x_held)} held-out clips, log-mel {tuple(x_train.shape[1:])} "
        f"({time.time() - t0:.0f} s)",
        flush=True,
    )

    x_all = torch.cat([x_train, x_train_rs])
    y_all = torch.cat([train_labels, train_labels])
    net = AudioClassifier(
        channels=CHANNELS, feature_dim=FEATURE_DIM, num_mels=N_MELS, num_samples=NUM_SAMPLES
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(x_all) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(perm) - args.batch_size + 1, args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb, yb = shift(x_all[idx], 6, gen), y_all[idx]
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(idx)
        _, p_held = features_and_preds(net, x_held)
        _, p_held_rs = features_and_preds(net, x_held_rs)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / total:.4f} train acc {correct / total:.4f} "
            f"held-out acc {float((p_held == held_labels).double().mean()):.4f} "
            f"(resynthesised {float((p_held_rs == held_labels).double().mean()):.4f})  "
            f"{time.time() - t0:.0f} s",
            flush=True,
        )

    f_train, p_train = features_and_preds(net, x_train)
    f_held, p_held = features_and_preds(net, x_held)
    f_held_rs, p_held_rs = features_and_preds(net, x_held_rs)
    f64 = f_train.double().numpy()
    acc = {
        name: float((p == y).double().mean())
        for name, p, y in (
            ("train_accuracy", p_train, train_labels),
            ("heldout_accuracy", p_held, held_labels),
            ("heldout_resynth_accuracy", p_held_rs, held_labels),
        )
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out / "model.safetensors"))
    config = {
        "channels": list(CHANNELS),
        "feature_dim": FEATURE_DIM,
        "num_classes": 10,
        "num_mels": N_MELS,
        "num_samples": NUM_SAMPLES,
        "sample_rate": SAMPLE_RATE,
        "top_db": TOP_DB,
        "epochs": args.epochs,
        "train_clips": len(x_train),
        "heldout_clips": len(x_held),
        "seed": SEED,
        **acc,
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    np.savez(
        args.out / "reference_stats.npz",
        mu=f64.mean(0),
        sigma=np.cov(f64, rowvar=False),
        # every 3rd train clip (200 per word, labels cycle i % 10) for precision / recall: k-NN radii
        # cost O(N^2), and 2,000 reference points keep an evaluation at about a second
        features=f_train[::3].numpy().astype(np.float32),
        heldout_features=f_held.numpy().astype(np.float32),
        heldout_resynth_features=f_held_rs.numpy().astype(np.float32),
        heldout_labels=held_labels.numpy().astype(np.int64),
    )
    print(f"{acc}; wrote {args.out} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
