"""Where to hook: the table of DiT block families, and :func:`find_branches`, which adds structural discovery.

The table holds what structure cannot tell: the original DiT, Flux-style single-stream blocks whose MLP is the
``proj_mlp`` projection, and the keys of families whose schedules already exist (``attn1``/``ff`` for DiT,
Wan's ``ffn``...). Blocks are matched by class name through the MRO (so the user's own ``models`` module or
diffusers never has to be imported), optionally with a module prefix and attributes that must be present.
Every other block of a diffusers model is found by :mod:`smoothcache.discovery` (``_repeated_blocks``, block
lists, attention and feed-forward modules); user-given ``block_classes=`` replace both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch.nn as nn

from .branches import Branch
from .denoisers import not_a_model
from .deprecation import moved, renamed
from .discovery import discover
from .errors import NotADenoiserError, ScheduleError, TargetError

__all__ = ["BlockFamily", "TARGETS", "find_branches", "fusable_blocks", "schedule_branches"]


@dataclass(frozen=True)
class BlockFamily:
    """One kind of transformer block and its cacheable residual branches.

    Args:
        name: short label shown in messages and stats.
        class_names: block class names, matched against every class in the block's MRO; empty: any class
            (from ``module_prefix``) that has every attribute of ``requires``, a purely structural row.
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
        if not self.class_names:
            return type(module).__module__.startswith(self.module_prefix) and all(
                isinstance(getattr(module, attr, None), nn.Module) for attr in self.requires
            )
        for cls in type(module).__mro__:
            if cls.__name__ in self.class_names and cls.__module__.startswith(self.module_prefix):
                return all(hasattr(module, attr) for attr in self.requires)
        return False


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


#: The known block families, checked in order. A block matched by one family is not matched again.
TARGETS: tuple[BlockFamily, ...] = (
    # diffusers BasicTransformerBlock: DiT, PixArt-alpha/Sigma, Latte. Latte's spatial and temporal blocks
    # share the keys (temporal ones have no attn2): spatial are blocks 0..L-1, temporal L..2L-1 ("attn1-3"
    # keys).
    BlockFamily("diffusers-basic", ("BasicTransformerBlock",), _same("attn1", "attn2", "ff"), "diffusers"),
    # facebookresearch/DiT models.py (and Open-Sora-Plan style copies): x + gate * attn(...), x + gate *
    # mlp(...).
    BlockFamily("dit", ("DiTBlock",), _same("attn", "mlp"), requires=("attn", "mlp", "adaLN_modulation")),
    # SD3 / SD3.5 MMDiT joint blocks: attn returns (image, context) outputs; attn2 only in SD3.5's
    # dual-attention layers, ff_context not in the last (context_pre_only) block.
    BlockFamily(
        "sd3-joint", ("JointTransformerBlock",), _same("attn", "attn2", "ff", "ff_context"), "diffusers"
    ),
    # Flux double-stream and single-stream blocks. A single block feeds [attn; act(proj_mlp)] to one shared
    # proj_out, so its MLP branch is proj_mlp (act_mlp and proj_out run every step).
    BlockFamily("flux-double", ("FluxTransformerBlock",), _same("attn", "ff", "ff_context"), "diffusers"),
    BlockFamily(
        "flux-single",
        ("FluxSingleTransformerBlock",),
        {"single_attn": "attn", "single_mlp": "proj_mlp"},
        "diffusers",
    ),
    # Stable Audio Open.
    BlockFamily("stable-audio", ("StableAudioDiTBlock",), _same("attn1", "attn2", "ff"), "diffusers"),
    # Video DiTs. CogVideoX attn1 returns (video, text); its ff runs on [text; video]. Wan 2.2 A14B has two
    # experts (transformer, transformer_2): one SmoothCache each, each counting steps from its own first call.
    BlockFamily("cogvideox", ("CogVideoXBlock",), _same("attn1", "ff"), "diffusers"),
    BlockFamily("wan", ("WanTransformerBlock",), _same("attn1", "attn2", "ffn"), "diffusers"),
    # Any other Flux-style single-stream block (HunyuanVideo, HunyuanImage, Chroma, Bria, LongCat, Ovis...):
    # [attn; act(proj_mlp)] -> proj_out, so the MLP branch is proj_mlp, keyed like Flux's.
    BlockFamily(
        "flux-like-single",
        (),
        {"single_attn": "attn", "single_mlp": "proj_mlp"},
        "diffusers",
        requires=("attn", "proj_mlp", "act_mlp", "proj_out"),
    ),
)


def _as_family(block_classes: Sequence[type | str] | type | str, keys: Iterable[str]) -> BlockFamily:
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
    return BlockFamily("custom", tuple(names), _same(*keys))


def find_branches(
    model: nn.Module,
    keys: Iterable[str] | None = None,
    block_classes: Sequence[type | str] | type | str | None = None,
    *,
    components: Iterable[str] | None = None,
) -> list[Branch]:
    """Every cacheable branch in ``model``, block by block in module order.

    Table families first (:data:`TARGETS`), then the blocks :func:`smoothcache.discovery.discover` finds
    structurally in what the table left. Branches discovery finds but must not cache (state, non-tensor
    output, in-place use) are left out with a logged warning, and named in the error if ``keys`` asks for
    them.

    Args:
        model: the denoiser (e.g. ``pipe.transformer``); a pipeline is refused with the attribute to pass.
        keys: branch keys to keep (``["attn1", "ff"]``); None keeps every branch found.
        block_classes: user-given block classes (or class names); then ``keys`` names the branch
            attributes, and neither the table nor discovery is used.
        components: the former name of ``keys`` (deprecated).

    Example:
        >>> from diffusers import DiTTransformer2DModel
        >>> from smoothcache import find_branches
        >>> model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
        ...                               out_channels=4, num_layers=2, sample_size=8)
        >>> [(b.path, b.key) for b in find_branches(model, ["attn1"])]
        [('transformer_blocks.0.attn1', 'attn1'), ('transformer_blocks.1.attn1', 'attn1')]
    """
    keys = renamed(keys, components, "components", "keys")
    if not isinstance(model, nn.Module):
        raise NotADenoiserError(not_a_model(model))
    wanted = None if keys is None else list(dict.fromkeys(keys))
    if wanted is not None and not wanted:
        raise TargetError("keys is empty: name at least one branch to wrap")
    if block_classes is not None:
        if wanted is None:
            raise TargetError("with block_classes, also pass keys: the branch attribute names to wrap")
        families: tuple[BlockFamily, ...] = (_as_family(block_classes, wanted),)
    else:
        families = TARGETS

    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    found: list[tuple[int, int, Branch]] = []  # (block position, position in block, branch)
    counters: dict[str, int] = {}
    claimed: list[str] = []
    for path, module in model.named_modules():
        if any(path.startswith(prefix + ".") for prefix in claimed):
            continue
        family = next((f for f in families if f.matches(module)), None)
        if family is None:
            continue
        claimed.append(path)
        index = counters.get(family.name, 0)
        counters[family.name] = index + 1
        for j, (key, attr) in enumerate(family.branches.items()):
            sub = getattr(module, attr, None)
            if isinstance(sub, nn.Module):
                branch = Branch(
                    f"{path}.{attr}" if path else attr, key, index, family.name, sub, block_path=path
                )
                found.append((order[path], j, branch))

    skipped = []
    blocks = len(claimed)
    if block_classes is None:
        generic = discover(model, claimed, reserved={b.key for _, _, b in found})
        skipped = generic.skipped
        blocks += len(generic.blocks)
        for j, branch in enumerate(generic.branches):
            found.append((order[branch.block_path], j, branch))
    found.sort(key=lambda item: item[:2])
    available = list(dict.fromkeys(b.key for _, _, b in found))
    branches = [b for _, _, b in found if wanted is None or b.key in wanted]

    if not blocks:
        known = ", ".join(sorted({n for f in families for n in f.class_names}))
        hint = "" if block_classes is not None else " or blocks holding diffusers attention modules"
        raise TargetError(
            f"no transformer blocks found in {type(model).__name__}: smoothcache looks for {known}{hint}. "
            "Pass block_classes=[YourBlock] and keys=['attn', 'mlp'] for other models."
        )
    if wanted is not None:
        missing = [c for c in wanted if c not in available]
        refused = {r.key: r for r in skipped if r.key in missing}
        if refused:
            raise TargetError(
                "cannot cache "
                + "; ".join(str(r) for r in refused.values())
                + (f"; its other branches are: {available}" if available else "")
            )
        if missing:
            raise TargetError(
                f"key(s) {missing} match no branch of {type(model).__name__}; its blocks have: {available}"
            )
    if not branches:
        why = f" (left out: {'; '.join(map(str, skipped[:3]))})" if skipped else ""
        raise TargetError(f"the blocks of {type(model).__name__} have no cacheable branch modules{why}")
    return branches



def fusable_blocks(model: nn.Module, branches: list[Branch], rows: list, block_classes) -> set[str]:
    """Paths of the blocks whose every discoverable branch is wrapped with a schedule row (with user
    ``block_classes``, the keys given are all the branches there are)."""
    keys = None if block_classes is None else sorted({b.path.rpartition(".")[2] for b in branches})
    try:
        everything = find_branches(model, keys, block_classes)
    except TargetError:
        return set()
    scheduled = {b.path for b, row in zip(branches, rows) if row is not None}
    ok: dict[str, bool] = {}
    for b in everything:
        ok[b.block_path] = ok.get(b.block_path, True) and b.path in scheduled
    return {path for path, fine in ok.items() if fine}


def schedule_branches(model: nn.Module, schedule, keys, block_classes) -> list[Branch]:
    """The branches a :class:`~smoothcache.schedule.Schedule` applies to (with ``keys`` and ``block_classes``
    as for :func:`find_branches`), checked against the model: ScheduleError if it does not fit."""
    wanted = schedule.branch_keys
    if keys is not None:
        keys = list(keys)
        stray = [k for k in wanted if k not in keys]
        if stray:
            raise ScheduleError(f"schedule key(s) {stray} are not among the keys to wrap {keys}")
    try:
        branches = find_branches(model, wanted, block_classes)
    except TargetError as err:
        raise ScheduleError(f"schedule does not fit {type(model).__name__}: {err}") from None
    for key in wanted:
        blocks = sorted({b.block for b in branches if b.key == key})
        for index in schedule.block_indices(key):
            if index not in blocks:
                raise ScheduleError(
                    f"schedule key '{key}-{index}': {type(model).__name__} has '{key}' only in blocks "
                    f"{blocks[0]}..{blocks[-1]}"
                )
    return [b for b in branches if schedule.for_block(b.key, b.block) is not None]


__getattr__ = moved(
    __name__,
    {
        "Branch": "smoothcache.branches:Branch",
        "TargetError": "smoothcache.errors:TargetError",
        "NotADenoiserError": "smoothcache.errors:NotADenoiserError",
        "find_timestep": "smoothcache.steps:find_timestep",
        "denoisers": "smoothcache.denoisers:denoisers",
        "as_denoiser": "smoothcache.denoisers:as_denoiser",
        "not_a_model": "smoothcache.denoisers:not_a_model",
        "is_stateful_call": "smoothcache.calls:is_stateful_call",
    },
)
