from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# tiny models: one thread is fastest, and several threads spin against other work on a shared 2-core machine
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The original implementation's published schedules, as shipped in the package."""
    from smoothcache.references import REFERENCE_DIR

    return REFERENCE_DIR


def make_tiny_dit(num_layers=3, sample_size=8, seed=0):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    return DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        num_layers=num_layers, sample_size=sample_size, patch_size=2,
    ).eval()


def make_tiny_pipe(num_layers=3, seed=0, scheduler=None):
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

    transformer = make_tiny_dit(num_layers, seed=seed)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(8,), norm_num_groups=8, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
    ).eval()
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler or DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_steps(model, timesteps, batch=2, seed=0, size=8, cfg_calls=1):
    """Call a diffusers DiT like a sampler: one call per step, or ``cfg_calls`` calls with the same
    timestep."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=g)
    labels = torch.arange(batch) % 10
    with torch.no_grad():
        for t in timesteps:
            preds = [
                model(x, timestep=torch.full((batch,), t), class_labels=labels).sample
                for _ in range(cfg_calls)
            ]
            x = x - 0.05 * sum(preds) / len(preds)
    return x


@pytest.fixture
def tiny_dit():
    return make_tiny_dit()


@pytest.fixture
def tiny_pipe():
    return make_tiny_pipe()
