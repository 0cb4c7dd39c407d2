"""``python -m bench.peers``: executed compute of every peer operating point on the embedded digits DiT."""

from __future__ import annotations

import argparse
import time

import torch

from .compute import measure_compute
from .points import FAMILIES, peer_methods
from .probes import peer_failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--scheduler", default="ddim", choices=("ddim", "dpm"))
    parser.add_argument("--labels", type=int, default=20, help="samples per measured generation")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES) + ["cache-dit"],
                        help=f"of {FAMILIES} and cache-dit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_pipeline

    from .. import cachedit

    pipe = digits_pipeline(scheduler=args.scheduler)
    g = DIGITS_GUIDANCE_SCALE
    diffusers_families = [f for f in args.families if f in FAMILIES]
    methods = peer_methods(pipe, args.steps, g, calibration_labels=[9 - i % 10 for i in range(20)],
                           calibration_seed=999, families=diffusers_families)
    if "cache-dit" in args.families:
        if cachedit.available():
            methods.update(cachedit.cachedit_methods(pipe, args.steps))
        else:
            print("cache-dit is not installed; skipped")
    print("failures:", peer_failures(pipe, families=diffusers_families) or "none")
    labels = [i % 10 for i in range(args.labels)]
    for name, method in methods.items():
        start = time.perf_counter()
        c = measure_compute(
            pipe, method, class_labels=labels, num_inference_steps=args.steps, guidance_scale=g
        )
        print(
            f"{name:60s} attn {c.attn_fraction:.3f} ff {c.ff_fraction:.3f} block {c.block_fraction:.3f} "
            f"speedup {c.speedup:.2f}x  ({time.perf_counter() - start:.1f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
