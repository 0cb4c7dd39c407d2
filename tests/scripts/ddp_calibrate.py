"""Run under torchrun: each rank calibrates its share of the seeds; rank 0 writes the reduced profile and the
gathered samples of a data-parallel cached generation."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_tiny_pipe  # noqa: E402
from smoothcache import Calibrator, Schedule, SmoothCache, distributed  # noqa: E402

out = Path(sys.argv[1])
seeds = list(range(5))
torch.set_num_threads(1)
assert distributed.init(), "expected WORLD_SIZE > 1"
pipe = make_tiny_pipe()
mine = distributed.shard(seeds)
with Calibrator(pipe.transformer) as cal:
    for seed in mine:
        pipe(
            class_labels=[seed % 10],
            num_inference_steps=10,
            generator=torch.manual_seed(seed),
            output_type="np",
        )
profile = distributed.all_reduce_profile(cal.profile if mine else None)

labels = list(range(7))
schedule = Schedule.from_profile(profile, 0.3)
with SmoothCache(pipe.transformer, schedule):
    images = [
        pipe(
            class_labels=[c], num_inference_steps=10, generator=torch.manual_seed(100 + c), output_type="pt"
        ).images
        for c in distributed.shard(labels)
    ]
samples = distributed.gather(torch.cat(images))
if distributed.rank() == 0:
    profile.save(out / "ddp.safetensors")
    np.save(out / "ddp_samples.npy", samples.numpy())
distributed.finish()
