"""Where to hook: the one table of DiT block families and the residual branches SmoothCache wraps.

All model-specific knowledge lives here. Blocks are matched by class name through the MRO (so the user's
own ``models`` module or diffusers never has to be imported), optionally with a module prefix and a set of
attributes that must be present (a structural check for name-only matches such as ``DiTBlock``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

__all__ = ["BlockFamily", "Branch", "TargetError", "TARGETS", "find_branches", "find_timestep"]


class TargetError(ValueError):
    """The model has no blocks or branches SmoothCache can hook."""


@dataclass(frozen=True)
class BlockFamily:
    """One kind of transformer block and its cacheable residual branches.

    Args:
        name: short label shown in messages and stats.
        class_names: block class names, matched against every class in the block's MRO.
        branches: schedule key -> attribute name of the branch module inside the block. The key is what
            schedules and profiles call the branch (``"attn1"``); it differs from the attribute only where
            two families of one model share attribute names (Flux single blocks).
        module_prefix: the block class must come from a module starting with this (empty: any module).
        requires: attributes the block must have, a structural check for name-only matches.
    """

    name: str
    class_names: tuple[str, ...]
    branches: Mapping[str, str]
    module_prefix: str = ""
    requires: tuple[str, ...] = ()

    def matches(self, module: nn.Module) -> bool:
        for cls in type(module).__mro__:
            if cls.__name__ in self.class_names and cls.__module__.startswith(self.module_prefix):
                return all(hasattr(module, attr) for attr in self.requires)
        return False


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


#: The known block families, checked in order. A block matched by one family is not matched again.
TARGETS: tuple[BlockFamily, ...] = (
    # diffusers BasicTransformerBlock: DiT, PixArt-alpha/Sigma, Latte. Latte's spatial and temporal blocks share
    # the keys (temporal ones have no attn2): spatial are blocks 0..L-1, temporal L..2L-1 ("attn1-3" keys).
    BlockFamily("diffusers-basic", ("BasicTransformerBlock",), _same("attn1", "attn2", "ff"), "diffusers"),
    # facebookresearch/DiT models.py (and Open-Sora-Plan style copies): x + gate * attn(...), x + gate * mlp(...).
    BlockFamily("dit", ("DiTBlock",), _same("attn", "mlp"), requires=("attn", "mlp", "adaLN_modulation")),
    # SD3 / SD3.5 MMDiT joint blocks: attn returns (image, context) outputs; attn2 only in SD3.5's dual-attention
    # layers, ff_context not in the last (context_pre_only) block.
    BlockFamily("sd3-joint", ("JointTransformerBlock",), _same("attn", "attn2", "ff", "ff_context"), "diffusers"),
    # Flux double-stream and single-stream blocks. A single block feeds [attn; act(proj_mlp)] to one shared
    # proj_out, so its MLP branch is proj_mlp (act_mlp and proj_out run every step).
    BlockFamily("flux-double", ("FluxTransformerBlock",), _same("attn", "ff", "ff_context"), "diffusers"),
    BlockFamily(
        "flux-single", ("FluxSingleTransformerBlock",), {"single_attn": "attn", "single_mlp": "proj_mlp"}, "diffusers"
    ),
    # Stable Audio Open.
    BlockFamily("stable-audio", ("StableAudioDiTBlock",), _same("attn1", "attn2", "ff"), "diffusers"),
    # Video DiTs. CogVideoX attn1 returns (video, text); its ff runs on [text; video]. Wan 2.2 A14B has two
    # experts (transformer, transformer_2): one SmoothCache each, each counting steps from its own first call.
    BlockFamily("cogvideox", ("CogVideoXBlock",), _same("attn1", "ff"), "diffusers"),
    BlockFamily("wan", ("WanTransformerBlock",), _same("attn1", "attn2", "ffn"), "diffusers"),
)


@dataclass
class Branch:
    """One wrapped residual branch: ``module`` is ``block.<attr>`` of the ``block``-th block of its family."""

    path: str
    key: str
    block: int
    family: str
    module: nn.Module = field(repr=False)


def _as_family(block_classes: Sequence[type | str] | type | str, components: Iterable[str]) -> BlockFamily:
    if isinstance(block_classes, (type, str)):
        block_classes = [block_classes]
    names = []
    for cls in block_classes:
        if isinstance(cls, str):
            names.append(cls)
        elif isinstance(cls, type) and issubclass(cls, nn.Module):
            names.append(cls.__name__)
        else:
            raise TargetError(f"block_classes must hold nn.Module subclasses or class names, got {cls!r}")
    if not names:
        raise TargetError("block_classes is empty")
    return BlockFamily("custom", tuple(names), _same(*components))


def find_branches(
    model: nn.Module,
    components: Iterable[str] | None = None,
    block_classes: Sequence[type | str] | type | str | None = None,
) -> list[Branch]:
    """Every cacheable branch in ``model``, in module order.

    Args:
        model: the denoiser (e.g. ``pipe.transformer``).
        components: branch keys to keep (``["attn1", "ff"]``); None keeps every branch the family knows.
        block_classes: user-given block classes (or class names); then ``components`` names the branch
            attributes and the table is not used.
    """
    if not isinstance(model, nn.Module):
        raise TargetError(f"expected a torch.nn.Module, got {type(model).__name__}")
    wanted = None if components is None else list(dict.fromkeys(components))
    if wanted is not None and not wanted:
        raise TargetError("components is empty: name at least one branch to wrap")
    if block_classes is not None:
        if wanted is None:
            raise TargetError("with block_classes, also pass components: the branch attribute names to wrap")
        families: tuple[BlockFamily, ...] = (_as_family(block_classes, wanted),)
    else:
        families = TARGETS

    branches: list[Branch] = []
    counters: dict[str, int] = {}
    claimed: list[str] = []
    available: dict[str, None] = {}
    for path, module in model.named_modules():
        if any(path.startswith(prefix + ".") for prefix in claimed):
            continue
        family = next((f for f in families if f.matches(module)), None)
        if family is None:
            continue
        claimed.append(path)
        index = counters.get(family.name, 0)
        counters[family.name] = index + 1
        for key, attr in family.branches.items():
            sub = getattr(module, attr, None)
            if not isinstance(sub, nn.Module):
                continue
            available.setdefault(key, None)
            if wanted is None or key in wanted:
                branches.append(Branch(f"{path}.{attr}" if path else attr, key, index, family.name, sub))

    if not claimed:
        known = ", ".join(sorted({n for f in families for n in f.class_names}))
        raise TargetError(
            f"no transformer blocks found in {type(model).__name__}: smoothcache looks for {known}. "
            "Pass block_classes=[YourBlock] and components=['attn', 'mlp'] for other models."
        )
    if wanted is not None:
        found = {b.key for b in branches}
        missing = [c for c in wanted if c not in found]
        if missing:
            raise TargetError(
                f"component(s) {missing} match no branch of {type(model).__name__}; "
                f"its blocks have: {list(available)}"
            )
    if not branches:
        raise TargetError(f"the blocks of {type(model).__name__} have no cacheable branch modules")
    return branches


_TIMESTEP_KWARGS = ("timestep", "timesteps", "t", "sigma")


def find_timestep(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """The timestep of a denoiser call: a known keyword, else the second positional argument.

    Covers diffusers transformers (``timestep=``) and facebookresearch/DiT's ``forward(x, t, y)``. A tensor
    of several timesteps (one per sample, or per token as Wan 2.2 TI2V's image-to-video pipeline passes,
    with 0 for the clean conditioning frame) is reduced to its largest entry: the current noise level.
    """
    for name in _TIMESTEP_KWARGS:
        value = kwargs.get(name)
        if value is not None:
            return _highest(value)
    return _highest(args[1]) if len(args) > 1 else None


def _highest(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() > 1 and value.dtype != torch.bool:
        return value.detach().amax()
    return value


#: Pipeline attributes that hold a denoiser, in the order they are looked up.
DENOISER_ATTRIBUTES = ("transformer", "transformer_2", "unet", "prior", "decoder")


def denoisers(pipe: Any) -> dict[str, nn.Module]:
    """The denoiser modules of a diffusers pipeline, by attribute name (``transformer``, ``transformer_2``...)."""
    found = {}
    for name in DENOISER_ATTRIBUTES:
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            found[name] = module
    return found


def as_denoiser(model: Any) -> nn.Module:
    """``model`` itself, or the one denoiser of a pipeline; a clear TypeError for anything else."""
    if isinstance(model, nn.Module):
        return model
    found = denoisers(model)
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        names = ", ".join(f"pipe.{n}" for n in found)
        raise TypeError(
            f"{type(model).__name__} has several denoisers ({names}): pass one of them, or use "
            "smoothcache.enable(pipe, ...) to cache each"
        )
    raise TypeError(f"expected the denoiser (a torch.nn.Module such as pipe.transformer), got {type(model).__name__}")
