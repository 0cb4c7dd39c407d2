"""Stand-ins for the parts of ComfyUI the SmoothCache nodes touch, for tests that run without ComfyUI.

- :class:`FluxLike`: a tiny DiT with ComfyUI's block loop and hooks (``patches_replace["dit"]``): double
  blocks add into ``txt`` in place, single blocks add into their input in place (as Flux's do), ControlNet
  adds into the returned hidden state in place after each block.
- :class:`FakePatcher`: the ModelPatcher methods the nodes call (``clone``, wrappers, block patches).
- :func:`sample`: a sampler run as ComfyUI makes it: ``OUTER_SAMPLE`` wrappers around the run with a guider
  holding a per-run copy of ``model_options``, ``APPLY_MODEL`` wrappers around each model call, the
  per-call ``transformer_options`` (``sigmas``, ``cond_or_uncond``, ``uuids``), cond and uncond batched or
  apart, one or two evaluations per sigma.
"""

from __future__ import annotations

import copy
import sys
import types
import uuid

import torch
import torch.nn as nn

OUTER_SAMPLE, APPLY_MODEL = "outer_sample", "apply_model"
DIM, TXT, IMG = 8, 3, 5


def effect(layer: nn.Linear, x: torch.Tensor, input_free: bool) -> torch.Tensor:
    """What a block adds: depends on its input, or (``input_free``) only on the layer, so that a block's
    residual is ``bias * (1 + sigma)``, linear in sigma, and a linear forecast of it is exact."""
    return layer.bias.expand_as(x) if input_free else torch.tanh(layer(x))


class DoubleBlock(nn.Module):
    def __init__(self, input_free=False):
        super().__init__()
        self.a, self.b = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.input_free = input_free

    def forward(self, img, txt, vec):
        img = img + effect(self.a, img, self.input_free) * vec
        txt += effect(self.b, txt, self.input_free) * vec  # in place, as Flux's DoubleStreamBlock
        return img, txt


class SingleBlock(nn.Module):
    def __init__(self, input_free=False):
        super().__init__()
        self.a = nn.Linear(DIM, DIM)
        self.input_free = input_free

    def forward(self, x, vec):
        x += effect(self.a, x, self.input_free) * vec  # in place, as Flux's SingleStreamBlock
        return x


class FluxLike(nn.Module):
    """Two double blocks then three single blocks, called as ComfyUI's Flux calls them."""

    def __init__(self, double=2, single=3, seed=0, input_free=False):
        super().__init__()
        torch.manual_seed(seed)
        self.double_blocks = nn.ModuleList(DoubleBlock(input_free) for _ in range(double))
        self.single_blocks = nn.ModuleList(SingleBlock(input_free) for _ in range(single))
        self.calls = {"double_block": 0, "single_block": 0}  # blocks actually run

    def forward(self, img, txt, sigma, transformer_options, control=None):
        replace = transformer_options.get("patches_replace", {}).get("dit", {})
        vec = (1.0 + sigma).reshape(-1, 1, 1)
        for i, block in enumerate(self.double_blocks):

            def run(args, block=block):
                self.calls["double_block"] += 1
                out = {}
                out["img"], out["txt"] = block(args["img"], args["txt"], args["vec"])
                return out

            args = {"img": img, "txt": txt, "vec": vec, "transformer_options": transformer_options}
            hook = replace.get(("double_block", i))
            out = run(args) if hook is None else hook(args, {"original_block": run})
            img, txt = out["img"], out["txt"]
            if control is not None:
                img += control * (i + 1)  # in place, as ComfyUI's ControlNet
        x = torch.cat((txt, img), 1)
        for i, block in enumerate(self.single_blocks):

            def run(args, block=block):
                self.calls["single_block"] += 1
                return {"img": block(args["img"], args["vec"])}

            args = {"img": x, "vec": vec, "transformer_options": transformer_options}
            hook = replace.get(("single_block", i))
            x = (run(args) if hook is None else hook(args, {"original_block": run}))["img"]
        return x[:, txt.shape[1] :]


class FakePatcher:
    """The ModelPatcher methods the nodes use."""

    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}
        self.wrappers = {}

    def clone(self):
        other = FakePatcher(self.model)
        other.model_options = copy.deepcopy(self.model_options)
        other.wrappers = {k: {key: list(fns) for key, fns in v.items()} for k, v in self.wrappers.items()}
        return other

    def get_model_object(self, name):
        assert name == "diffusion_model"
        return self.model

    def add_wrapper_with_key(self, kind, key, fn):
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(fn)

    def remove_wrappers_with_key(self, kind, key):
        self.wrappers.get(kind, {}).pop(key, None)

    def set_model_patch_replace(self, patch, name, block_name, number):
        options = self.model_options["transformer_options"]
        options.setdefault("patches_replace", {}).setdefault(name, {})[(block_name, number)] = patch

    def wrappers_of(self, kind):
        return [fn for fns in self.wrappers.get(kind, {}).values() for fn in fns]


def fake_comfy_modules() -> dict:
    """``comfy`` and ``comfy.patcher_extension`` with the wrapper names the nodes use."""
    comfy = types.ModuleType("comfy")
    extension = types.ModuleType("comfy.patcher_extension")
    extension.WrappersMP = type("WrappersMP", (), {"OUTER_SAMPLE": OUTER_SAMPLE, "APPLY_MODEL": APPLY_MODEL})
    comfy.patcher_extension = extension
    return {"comfy": comfy, "comfy.patcher_extension": extension}


def install_fake_comfy(monkeypatch) -> None:
    for name, module in fake_comfy_modules().items():
        monkeypatch.setitem(sys.modules, name, module)


class Executor:
    """ComfyUI's wrapper executor: each wrapper gets the rest of the chain; ``class_obj`` is the guider."""

    def __init__(self, fn, class_obj, wrappers):
        self.fn, self.class_obj, self.wrappers = fn, class_obj, list(wrappers)

    def __call__(self, *args, **kwargs):
        if not self.wrappers:
            return self.fn(*args, **kwargs)
        return self.wrappers[0](Executor(self.fn, self.class_obj, self.wrappers[1:]), *args, **kwargs)


class Guider:
    def __init__(self, patcher):
        self.model_patcher = patcher
        self.model_options = copy.deepcopy(patcher.model_options)


def sample(
    patcher, sigmas, *, batched=True, evaluations=1, control=None, seed=0, fail_at=None, cfg=2.0, txt_len=TXT
):
    """A sampler run over ``sigmas`` (Euler, CFG) through the patcher's wrappers; returns the final latent.

    ``evaluations`` model evaluations per step (2: a Heun-like second evaluation at the same sigma);
    ``fail_at``: raise ``fail_at[1]`` at the first model call of step ``fail_at[0]``.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, IMG, DIM, generator=g)
    cond, uncond = torch.randn(1, txt_len, DIM, generator=g), torch.randn(1, txt_len, DIM, generator=g)
    uuids = [uuid.UUID(int=1), uuid.UUID(int=2)]
    guider = Guider(patcher)
    model = patcher.get_model_object("diffusion_model")

    def model_call(x, sigma, txt, which):
        options = dict(guider.model_options["transformer_options"])
        options.update(
            sigmas=torch.full((x.shape[0],), sigma),
            cond_or_uncond=list(which),
            uuids=[uuids[w] for w in which],
        )
        extra = None if control is None else control.expand(x.shape[0], -1, -1)

        def apply(x, t, c_concat, c_crossattn, control, transformer_options):
            return model(x, c_crossattn.clone(), t, transformer_options, control)

        wrapped = Executor(apply, None, patcher.wrappers_of(APPLY_MODEL))
        return wrapped(x, torch.full((x.shape[0],), sigma), None, txt, extra, options)

    def denoise(x, sigma):
        if batched:
            both = model_call(torch.cat([x, x]), sigma, torch.cat([uncond, cond]), (1, 0))
            u, c = both.chunk(2)
        else:
            c = model_call(x, sigma, cond, (0,))
            u = model_call(x, sigma, uncond, (1,))
        return u + cfg * (c - u)

    def run(noise, latent, sampler, sigmas):
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            s, nxt = float(sigmas[i]), float(sigmas[i + 1])
            if fail_at is not None and i == fail_at[0]:
                raise fail_at[1]
            for _ in range(evaluations):
                den = denoise(x, s)
            x = x + (x - den) / s * (nxt - s)
        return x

    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        return Executor(run, guider, patcher.wrappers_of(OUTER_SAMPLE))(noise, None, None, sigmas), guider
