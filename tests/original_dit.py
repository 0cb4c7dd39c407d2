"""A miniature model with the structure of facebookresearch/DiT ``models.py`` (written for these tests).

``DiTBlock`` adds ``gate * attn(...)`` and ``gate * mlp(...)`` residual branches modulated by adaLN, and
``DiT.forward_with_cfg`` calls ``self.forward`` directly, as the original does.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, d/heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(
            6, dim=1
        )
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiT(nn.Module):
    def __init__(self, input_size=8, patch_size=2, in_channels=4, dim=32, depth=3, heads=2, num_classes=10):
        super().__init__()
        self.in_channels, self.patch_size, self.num_classes = in_channels, patch_size, num_classes
        self.x_embedder = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.t_embedder = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.y_embedder = nn.Embedding(num_classes + 1, dim)
        self.blocks = nn.ModuleList([DiTBlock(dim, heads) for _ in range(depth)])
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_linear = nn.Linear(dim, patch_size * patch_size * in_channels)
        self.dim = dim

    def forward(self, x, t, y):
        b, c, h, w = x.shape
        p = self.patch_size
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)  # (b, h*w/p^2, dim)
        cond = self.t_embedder(timestep_embedding(t, self.dim)) + self.y_embedder(y)  # (b, dim)
        for block in self.blocks:
            tokens = block(tokens, cond)
        shift, scale = self.final_adaLN(cond).chunk(2, dim=1)
        out = self.final_linear(modulate(self.final_norm(tokens), shift, scale))  # (b, n, p*p*c)
        out = out.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, h, w)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y)
        cond_eps, uncond_eps = torch.split(model_out, len(model_out) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([half_eps, half_eps], dim=0)


def sample_with_cfg(model, steps=10, batch=2, seed=0, cfg_scale=4.0, size=8):
    """A DDIM-like loop over ``forward_with_cfg``, enough to exercise step tracking."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_channels, size, size, generator=g)
    y = torch.cat([torch.arange(batch) % model.num_classes, torch.full((batch,), model.num_classes)])
    x = torch.cat([x, x])
    ts = torch.linspace(999, 0, steps).long()
    with torch.no_grad():
        for i, t in enumerate(ts):
            eps = model.forward_with_cfg(x, t.repeat(len(x)), y, cfg_scale)
            x = x - 0.1 * eps
    return x[:batch]
