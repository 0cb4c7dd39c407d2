"""Peak resident memory of one run: baseline, calibration or cache (prints MiB, from ru_maxrss)."""

import resource
import sys

import torch
import torch._dynamo  # noqa: F401  (smoothcache wrappers use torch.compiler.disable: same imports in every mode)
import torch.nn as nn

from smoothcache import Calibrator, Schedule, SmoothCache

TOKENS, DIM, BATCH, STEPS = 128, 256, 64, 20


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])

    def forward(self, x, t):
        for b in self.blocks:
            x = b(x) * 0.5
        return x


torch.manual_seed(0)
torch.set_num_threads(1)
net, mode = Net(), sys.argv[1]
if mode == "calibrate":
    ctx = Calibrator(net, ["attn", "mlp"], lookahead=2, block_classes=[Block], measure_macs=False)
elif mode == "cache":
    ctx = SmoothCache(net, Schedule.fixed_interval(STEPS, 2, ["attn", "mlp"]), block_classes=[Block])
else:
    ctx = None
x = torch.randn(BATCH, TOKENS, DIM)
with torch.no_grad():
    if ctx is not None:
        ctx.enable()
    for t in range(STEPS, 0, -1):
        x = net(x, torch.tensor(float(t)))
    if ctx is not None:
        ctx.disable()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
