"""Which ComfyUI diffusion models SmoothCache can hook: their block lists, found by structure.

ComfyUI's DiTs let a node replace each block through ``patches_replace["dit"][(kind, i)]``. Each family
below has that hook on every block of the lists named, and is recognised by those lists (as smoothcache's
diffusers side recognises its families by structure, not by class name):

- ``double_blocks`` + ``single_blocks`` (kinds ``double_block``, ``single_block``): Flux, Chroma,
  HunyuanVideo;
- ``joint_blocks`` (``double_block``): SD3 / MMDiT;
- ``transformer_blocks`` (``double_block``): Qwen-Image;
- ``blocks`` (``double_block``): Wan 2.1 and 2.2 (text to video, image to video, VACE).

Each block is one *branch* of a calibration profile: key ``double_block`` or ``single_block``, block number
its index, path ``double_blocks.3``. Lumina 2 and Z-Image (``NextDiT``, ``layers``) call their blocks
directly at this ComfyUI version, so they cannot be hooked and are refused with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..branches import Branch
from ..errors import TargetError

__all__ = ["BlockList", "ModelBlocks", "find_blocks"]

#: (what the structure is, its block lists as (attribute, hook kind)), tried in order
STRUCTURES = (
    (
        "Flux-style (Flux, Chroma, HunyuanVideo)",
        (("double_blocks", "double_block"), ("single_blocks", "single_block")),
    ),
    ("MMDiT (SD3)", (("joint_blocks", "double_block"),)),
    ("Qwen-Image", (("transformer_blocks", "double_block"),)),
    ("Wan 2.1 / 2.2", (("blocks", "double_block"),)),
)
#: block lists of models whose blocks ComfyUI calls without a hook
_UNHOOKED = {"layers": "Lumina 2 / Z-Image (NextDiT)"}


@dataclass(frozen=True)
class BlockList:
    """One hooked block list: the model attribute holding it, ComfyUI's hook kind and its length."""

    attr: str
    kind: str
    count: int


@dataclass(frozen=True)
class ModelBlocks:
    """The hooked blocks of one diffusion model.

    Attributes:
        model: the class name of the diffusion model (``Flux``, ``WanModel``...).
        structure: which of :data:`STRUCTURES` it has.
        lists: its block lists, in calling order.
        fuse_runs: whether consecutive blocks may be skipped as one run; False where the model adds into the
            hidden state between blocks (Wan VACE), so each block keeps its own residual.
    """

    model: str
    structure: str
    lists: tuple[BlockList, ...]
    fuse_runs: bool = True

    @property
    def kinds(self) -> list[str]:
        return [b.kind for b in self.lists]

    def blocks(self) -> list[tuple[str, int, str]]:
        """``(kind, index, path)`` of every hooked block, in calling order."""
        return [(b.kind, i, f"{b.attr}.{i}") for b in self.lists for i in range(b.count)]

    def branches(self, diffusion_model: nn.Module) -> list[Branch]:
        """Every hooked block as a profile branch (key: its kind, block: its index)."""
        modules = dict(diffusion_model.named_modules())
        return [
            Branch(path, kind, index, self.model, modules[path], path) for kind, index, path in self.blocks()
        ]

    def count(self, kind: str) -> int:
        return sum(b.count for b in self.lists if b.kind == kind)


def _module_list(model: nn.Module, attr: str) -> nn.ModuleList | None:
    value = getattr(model, attr, None)
    return value if isinstance(value, nn.ModuleList) and len(value) > 0 else None


def find_blocks(diffusion_model: nn.Module) -> ModelBlocks:
    """The hooked block lists of a ComfyUI diffusion model (``patcher.get_model_object("diffusion_model")``).

    Raises:
        TargetError: the model has none of the supported structures (the message says which it lacks), or is
            one whose blocks ComfyUI calls without a hook.
    """
    name = type(diffusion_model).__name__
    for structure, lists in STRUCTURES:
        found = [_module_list(diffusion_model, attr) for attr, _ in lists]
        if all(m is not None for m in found):
            return ModelBlocks(
                name,
                structure,
                tuple(BlockList(attr, kind, len(m)) for (attr, kind), m in zip(lists, found)),
                fuse_runs=_module_list(diffusion_model, "vace_blocks") is None,
            )
    for attr, family in _UNHOOKED.items():
        if _module_list(diffusion_model, attr) is not None:
            raise TargetError(
                f"{name} looks like {family}: ComfyUI calls its blocks without a block hook "
                "(patches_replace['dit']) at this version, so SmoothCache cannot skip them; this family is "
                "not supported"
            )
    known = "; ".join(f"{s}: {', '.join(a for a, _ in lists)}" for s, lists in STRUCTURES)
    raise TargetError(
        f"{name} has none of the block lists SmoothCache hooks in ComfyUI ({known}); this model is not "
        "supported"
    )
