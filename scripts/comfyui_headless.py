"""Headless ComfyUI on the CPU with tiny random models: for the SmoothCache integration tests and the workflow
script (scripts/comfyui_workflow.py). Needs a ComfyUI checkout (``COMFYUI_PATH``) and its Python dependencies.

:func:`bootstrap` makes ComfyUI importable without its server or a GPU: CPU device, PyTorch's SDPA attention,
deterministic algorithms, and an empty ``torchvision`` placeholder when it is not installed (only Cosmos and
Stable Cascade need it at run time). :func:`build` makes a tiny model of a family with ComfyUI's own classes
(``comfy.supported_models`` config -> ``model_base`` -> ``ModelPatcher``), with random weights, as ComfyUI's
loader does after detecting a checkpoint; :func:`ksample` samples it with ComfyUI's KSampler code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

#: modules ComfyUI imports on the way to sampling (besides torch and numpy)
NEEDED = ("einops", "torchsde", "safetensors", "yaml", "psutil", "PIL", "scipy", "tqdm", "transformers")


class ComfyUnavailable(RuntimeError):
    """ComfyUI cannot run here; the message says why (no checkout given, a dependency missing)."""


def bootstrap(comfy_path: str | os.PathLike | None = None) -> Path:
    """Make the ComfyUI checkout at ``comfy_path`` (default: ``$COMFYUI_PATH``) importable, on the CPU.

    Raises:
        ComfyUnavailable: no checkout given or found, or a module ComfyUI needs is not installed.
    """
    comfy_path = comfy_path or os.environ.get("COMFYUI_PATH")
    if not comfy_path:
        raise ComfyUnavailable("set COMFYUI_PATH to a ComfyUI checkout to run this")
    root = Path(comfy_path).expanduser().resolve()
    if not (root / "comfy" / "model_patcher.py").is_file():
        raise ComfyUnavailable(f"COMFYUI_PATH={root} is not a ComfyUI checkout (no comfy/model_patcher.py)")
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise ComfyUnavailable(f"ComfyUI needs {', '.join(missing)}, not installed in {sys.executable}")
    if "comfy.model_management" in sys.modules:
        return root
    import transformers  # noqa: F401  (before the placeholder below: it probes for torchvision)

    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        placeholder = types.ModuleType("torchvision")
        placeholder.__path__ = []
        sys.modules["torchvision"] = placeholder
        for sub in ("transforms", "models", "ops", "io"):
            sys.modules[f"torchvision.{sub}"] = types.ModuleType(f"torchvision.{sub}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # read when comfy.model_management is imported
    comfy.cli_args.args.use_pytorch_cross_attention = True
    comfy.cli_args.args.deterministic = True
    import comfy.model_management  # noqa: F401
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return root


def comfyui_version() -> str:
    """The ``__version__`` of the bootstrapped ComfyUI."""
    import comfyui_version

    return comfyui_version.__version__


CONTEXT, POOLED, TEXT = 64, 32, 8  # text features, pooled vector, text tokens


def families() -> dict:
    """Tiny configurations (the ldm model's constructor arguments, as model detection would give them)."""
    import comfy.supported_models as sm

    flux_like = dict(
        in_channels=16,
        out_channels=16,
        vec_in_dim=POOLED,
        context_in_dim=CONTEXT,
        hidden_size=64,
        mlp_ratio=4.0,
        num_heads=4,
        depth=2,
        depth_single_blocks=2,
        axes_dim=[4, 6, 6],
        qkv_bias=True,
        guidance_embed=True,
    )
    wan = dict(
        image_model="wan2.1",
        model_type="t2v",
        dim=64,
        ffn_dim=128,
        num_heads=2,
        num_layers=3,
        in_dim=16,
        out_dim=16,
        text_dim=CONTEXT,
        freq_dim=256,
        patch_size=(1, 2, 2),
        window_size=(-1, -1),
        qk_norm=True,
        cross_attn_norm=True,
        eps=1e-6,
    )
    return {
        "flux": (
            sm.Flux,
            dict(flux_like, image_model="flux", theta=10000, patch_size=2),
            (1, 16, 16, 16),
            True,
        ),
        "wan21": (sm.WAN21_T2V, wan, (1, 16, 3, 8, 8), False),
        "hunyuan_video": (
            sm.HunyuanVideo,
            dict(
                flux_like,
                image_model="hunyuan_video",
                theta=256,
                patch_size=[1, 2, 2],
                byt5=False,
                meanflow=False,
            ),
            (1, 16, 2, 8, 8),
            True,
        ),
        "qwen_image": (
            sm.QwenImage,
            dict(
                image_model="qwen_image",
                patch_size=2,
                in_channels=64,
                out_channels=16,
                num_layers=2,
                attention_head_dim=16,
                num_attention_heads=4,
                joint_attention_dim=CONTEXT,
                axes_dims_rope=(4, 6, 6),
            ),
            (1, 16, 16, 16),
            False,
        ),
        "sd3": (
            sm.SD3,
            dict(
                in_channels=16,
                out_channels=16,
                pos_embed_scaling_factor=None,
                depth=2,
                patch_size=2,
                adm_in_channels=POOLED,
                pos_embed_max_size=16,
                num_patches=256,
                context_embedder_config={
                    "target": "torch.nn.Linear",
                    "params": {"in_features": CONTEXT, "out_features": 128},
                },
            ),
            (1, 16, 16, 16),
            True,
        ),
        "lumina2": (
            sm.Lumina2,
            dict(
                image_model="lumina2",
                patch_size=2,
                in_channels=16,
                dim=64,
                cap_feat_dim=CONTEXT,
                n_layers=2,
                n_refiner_layers=1,
                n_heads=4,
                n_kv_heads=2,
                multiple_of=16,
                qk_norm=True,
                axes_dims=[4, 6, 6],
                axes_lens=[300, 512, 512],
            ),
            (1, 16, 16, 16),
            False,
        ),
    }


def _random_weights(module, seed: int, std: float = 0.05) -> None:
    """ComfyUI's layers skip weight initialisation (they expect a checkpoint): fill every parameter."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "scale" or ("norm" in name and leaf == "weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)
        for name, b in module.named_buffers():
            if name.endswith("pos_embed"):  # SD3's is made with torch.empty
                b.copy_(torch.randn(b.shape, generator=g) * 0.02)


def build(family: str = "flux", seed: int = 0, **config):
    """A ModelPatcher around a tiny random model of ``family`` (``config`` overrides its configuration)."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import torch

    cls, unet, _, _ = families()[family]
    model_config = cls(dict(unet, **config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    _random_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


def conditioning(family: str = "flux", seed: int = 1, text: int = TEXT):
    """Positive and negative CONDITIONING as a text encoder node gives them (random features)."""
    import torch

    _, _, _, pooled = families()[family]
    g = torch.Generator().manual_seed(seed)

    def one():
        extra = {"pooled_output": torch.randn(1, POOLED, generator=g), "guidance": 3.5} if pooled else {}
        if family == "lumina2":
            extra = {"attention_mask": torch.ones(1, text, dtype=torch.long)}
        return [[torch.randn(1, text, CONTEXT, generator=g), extra]]

    return one(), one()


def empty_latent(family: str = "flux", size: int | None = None) -> dict:
    """An empty LATENT of the family's tiny shape (``size``: another height and width)."""
    import torch

    shape = list(families()[family][2])
    if size is not None:
        shape[-2:] = [size, size]
    return {"samples": torch.zeros(shape)}


def ksample(
    model,
    positive,
    negative,
    latent,
    steps=6,
    cfg=2.0,
    sampler="euler",
    scheduler="simple",
    seed=0,
    **advanced,
):
    """ComfyUI's KSampler (``advanced``: KSamplerAdvanced's ``start_step``, ``last_step``, ``disable_noise``,
    ``force_full_denoise``, or ``denoise``); returns the latent tensor."""
    import nodes

    out = nodes.common_ksampler(
        model, seed, steps, cfg, sampler, scheduler, positive, negative, latent, **advanced
    )
    return out[0]["samples"]
