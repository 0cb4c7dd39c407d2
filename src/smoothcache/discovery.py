"""Structural discovery: the transformer blocks and residual branches of a diffusers model without a table
row.

Blocks are the items of the model's ``nn.ModuleList`` s and the instances of the classes the model declares in
``_repeated_blocks`` (diffusers' list for regional compilation) that hold a diffusers attention module; a
candidate holding other blocks (HunyuanVideo's ``token_refiner``) is a container, not a block. Branches are
the attention and feed-forward modules inside a block (searched depth-first, never inside another branch):

- attention: a subclass of diffusers' ``Attention`` or ``AttentionModuleMixin``, or a diffusers class named
  ``*Attention`` (``MochiAttention``, ``PerceiverAttention``...);
- feed-forward: a subclass of diffusers' ``FeedForward``, or a module with two or more weight layers whose
  class name (``*FeedForward``, ``*MLP``, ``*FFN``, ``GLUMBConv``...) or attribute name (``ff``, ``ffn``,
  ``mlp``, ``img_mlp``, ``ff_context``, ``feed_forward``...) says so. Norms, embeddings and lone projections
  never are.

Key naming rule: a branch is keyed by its attribute name in the block (the relative path with ``_`` when that
name is not unique there), prefixed by its block list: the list's attribute name minus a
``transformer_blocks`` / ``blocks`` / ``layers`` ending, so ``transformer_blocks.3.attn`` -> ``attn``,
``single_transformer_blocks.0.attn`` -> ``single_attn``, ``noise_refiner.1.feed_forward`` ->
``noise_refiner_feed_forward``. Blocks of different classes in one list add their distinguishing class-name
part (``MotifVideoSingleTransformerBlock`` vs ``MotifVideoTransformerBlock`` -> ``single_``). Two lists that
would share a prefix (or clash with a table family's keys) use their whole path instead (``encoder_``,
``decoder_``).

Nothing here imports diffusers: classes are recognised by name and module through the MRO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from .branches import Branch
from .safety import SkipRecord, branch_problems

__all__ = ["Discovery", "discover", "is_attention", "is_feed_forward"]

_FF_CLASS = re.compile(r"FeedForward|FFN|Ffn|MLP|Mlp|GLU|MoE|MOE")
_FF_ATTR = re.compile(r"^(ff|ffn|mlp|feed_forward|feedforward)(_\w+)?$|_(ff|ffn|mlp)$")
_NOT_FF = re.compile(r"norm|Norm|embed|Embed|modulation|Modulation|proj|Proj|AdaLN|adaln")
_LIST_SUFFIXES = ("transformer_blocks", "transformer_layers", "blocks", "layers", "block", "layer")


def _diffusers_mro(module: nn.Module) -> list[type]:
    return [c for c in type(module).__mro__ if c.__module__.startswith("diffusers")]


def _weight_layers(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)))


def is_attention(module: nn.Module) -> bool:
    """True for diffusers attention modules (``Attention``, ``AttentionModuleMixin`` subclasses,
    ``*Attention``)."""
    for cls in _diffusers_mro(module):
        if cls.__name__ in ("Attention", "AttentionModuleMixin"):
            return True
        if cls.__name__.endswith("Attention") and _weight_layers(module) >= 2:
            return True
    return False


def is_feed_forward(module: nn.Module, attr: str = "") -> bool:
    """True for a whole feed-forward: diffusers' ``FeedForward`` or an equivalent MLP (see the module
    docs)."""
    if isinstance(module, (nn.Linear, nn.ModuleList, nn.ModuleDict)) or is_attention(module):
        return False
    if any(c.__name__ == "FeedForward" for c in _diffusers_mro(module)):
        return True
    name = type(module).__name__
    if _NOT_FF.search(name) or _NOT_FF.search(attr) or _weight_layers(module) < 2:
        return False
    return bool(_FF_CLASS.search(name) or _FF_ATTR.search(attr))


def _is_branch(module: nn.Module, attr: str) -> bool:
    return is_attention(module) or is_feed_forward(module, attr)


def _branch_paths(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """(relative path, module) of every branch inside ``block``, depth-first, not looking inside a branch."""
    found: list[tuple[str, nn.Module]] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if _is_branch(child, name):
                found.append((path, child))
            else:
                walk(child, path + ".")

    walk(block, "")
    return found


def _has_attention(block: nn.Module) -> bool:
    return any(is_attention(m) for m in block.modules() if m is not block)


@dataclass
class Discovery:
    """Result of :func:`discover`: the blocks found, their branches, and the branches left out and why."""

    blocks: list[str]
    branches: list[Branch]
    skipped: list[SkipRecord]


def _candidates(model: nn.Module, claimed: list[str]) -> dict[str, nn.Module]:
    """Block lists' items and ``_repeated_blocks`` instances, none inside or around a claimed block."""
    repeated = set(getattr(type(model), "_repeated_blocks", None) or ())
    claimed_set = set(claimed)

    def free(path: str) -> bool:
        return (
            path not in claimed_set
            and not _inside(path, claimed)
            and not any(c.startswith(path + ".") for c in claimed)
        )

    out: dict[str, nn.Module] = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            for name, item in module.named_children():
                item_path = f"{path}.{name}" if path else name
                if free(item_path):
                    out.setdefault(item_path, item)
        elif path and type(module).__name__ in repeated and free(path):
            out.setdefault(path, module)
    return out


def _inside(path: str, prefixes) -> bool:
    return any(path.startswith(p + ".") for p in prefixes)


def _blocks(model: nn.Module, claimed: list[str]) -> list[tuple[str, nn.Module]]:
    """Innermost candidates holding a diffusers attention module, in module order."""
    cands = {
        p: m for p, m in _candidates(model, claimed).items() if _has_attention(m) and not is_attention(m)
    }
    blocks = [p for p in cands if not any(q.startswith(p + ".") for q in cands)]  # a container holds blocks
    order = {p: i for i, (p, _) in enumerate(model.named_modules())}
    return sorted(((p, cands[p]) for p in blocks), key=lambda pm: order[pm[0]])


def _strip(name: str) -> str:
    for suffix in _LIST_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)].strip("_")
    return name.strip("_")


def _list_path(block_path: str) -> str:
    head, _, last = block_path.rpartition(".")
    return head if last.isdigit() and head else block_path


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name)


def _class_parts(names: list[str]) -> dict[str, str]:
    """What tells the block classes of one list apart: their CamelCase words minus the common first and last
    words (``SpatialBlock`` / ``TemporalBlock`` -> ``spatial`` / ``temporal``)."""
    if len(names) < 2:
        return {n: "" for n in names}
    words = {n: _words(n) for n in names}
    shortest = min(len(w) for w in words.values())
    start = 0
    while start < shortest and len({w[start] for w in words.values()}) == 1:
        start += 1
    end = 0
    while end < shortest - start and len({w[len(w) - 1 - end] for w in words.values()}) == 1:
        end += 1
    return {n: "_".join(w[start : len(w) - end]).lower() for n, w in words.items()}


def _join(*parts: str) -> str:
    return "_".join(p for p in parts if p)


def _prefixes(groups: list[tuple[str, str]], reserved: set[str], keys_of: dict) -> dict[tuple[str, str], str]:
    """Prefix of each (list path, class name) group; see the module docs for the rule."""
    by_list: dict[str, list[str]] = {}
    for lst, cls in groups:
        by_list.setdefault(lst, []).append(cls)
    parts = {lst: _class_parts(classes) for lst, classes in by_list.items()}
    short = {g: _join(_strip(g[0].rpartition(".")[2]), parts[g[0]][g[1]]) for g in groups}
    full = {g: _join(_strip(g[0].replace(".", "_")), parts[g[0]][g[1]]) for g in groups}
    chosen: dict[tuple[str, str], str] = {}
    used: dict[str, tuple[str, str]] = {k: ("table", "") for k in reserved}
    for g in groups:
        for prefix in (short[g], full[g], _join(full[g], "_".join(_words(g[1])).lower())):
            keys = {_join(prefix, k) for k in keys_of[g]}
            if all(used.get(k, g) == g for k in keys):
                break
        chosen[g] = prefix
        for k in keys:
            used[k] = g
    return chosen


def _attr_keys(paths: list[str]) -> dict[str, str]:
    """Key of each branch of one block: its attribute name, or its relative path where that is ambiguous."""
    last = [p.rpartition(".")[2] for p in paths]
    return {
        p: (n if last.count(n) == 1 and not n.isdigit() else p.replace(".", "_")) for p, n in zip(paths, last)
    }


def discover(model: nn.Module, claimed: list[str] = (), reserved: set[str] = frozenset()) -> Discovery:
    """Blocks and branches of ``model`` found structurally, outside the ``claimed`` block paths (table
    matches).

    Args:
        model: the denoiser.
        claimed: paths of blocks already matched by the targets table (left alone, with their subtrees).
        reserved: keys the table already uses in this model (generic keys never collide with them).
    """
    blocks = _blocks(model, list(claimed))
    per_block = []
    for path, block in blocks:
        group = (_list_path(path), type(block).__name__)
        rel = _branch_paths(block)
        per_block.append((path, block, group, rel, _attr_keys([r for r, _ in rel])))
    groups = list(dict.fromkeys(g for _, _, g, _, _ in per_block))
    keys_of: dict = {g: set() for g in groups}
    for _, _, g, _, keys in per_block:
        keys_of[g].update(keys.values())
    prefixes = _prefixes(groups, set(reserved), keys_of)
    classes = [g[1] for g in groups]
    family = {g: g[1] if classes.count(g[1]) == 1 else f"{g[1]} ({g[0]})" for g in groups}

    branches: list[Branch] = []
    skipped: list[SkipRecord] = []
    counters: dict[tuple[str, str], int] = {}
    for path, block, g, rel, keys in per_block:
        index = counters.get(g, 0)
        counters[g] = index + 1
        problems = branch_problems(block, rel)
        for r, module in rel:
            key = _join(prefixes[g], keys[r])
            full = f"{path}.{r}"
            if r in problems:
                skipped.append(SkipRecord(full, key, problems[r]))
                continue
            branches.append(Branch(full, key, index, family[g], module, block_path=path))
    return Discovery([p for p, *_ in per_block], branches, skipped)
