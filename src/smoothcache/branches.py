"""Branches and the keys that name them.

A *branch* is a residual branch module of a transformer block (``transformer_blocks.3.attn1``). Its *key* is
the name schedules and profiles use for every branch of that kind (``attn1``), and its *block* is the number
of its block among the blocks of its family (3). A schedule key is a branch key, optionally with a block
number (``attn1-3``) that overrides the bare key for that block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TypeVar

import torch.nn as nn

from .errors import ScheduleError

__all__ = ["Branch", "block_paths", "parse_key", "row_for"]

# ASCII and matched whole: keys the cache never looks up ("attn1\n", "attn1-03", "attn-\u0663") are errors
_KEY = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_.]*?)(?:-(?P<block>0|[1-9][0-9]{0,8}))?")

Row = TypeVar("Row")


@dataclass
class Branch:
    """One residual branch: ``module`` at ``path``, in block number ``block`` (at ``block_path``) of
    ``family``."""

    path: str
    key: str
    block: int
    family: str
    module: nn.Module = field(repr=False)
    block_path: str


def parse_key(key: str) -> tuple[str, int | None]:
    """Split a schedule key into its branch key and optional block number: ``"attn-3"`` -> ``("attn", 3)``."""
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise ScheduleError(
            f"schedule key {key!r} is not a branch name or 'branch-<block index>' (e.g. 'attn1' or "
            "'attn1-3'; ASCII letters, digits, '_' and '.', and a block index without sign or leading zeros)"
        )
    block = match.group("block")
    return match.group("key"), (int(block) if block is not None else None)


def row_for(rows: Mapping[str, Row], key: str, block: int | None) -> Row | None:
    """The row of ``key`` in ``block``: the per-block entry (``"attn1-3"``) wins over the bare key; None if
    neither."""
    if block is not None:
        specific = rows.get(f"{key}-{block}")
        if specific is not None:
            return specific
    return rows.get(key)


def block_paths(branches: Sequence[Branch]) -> list[str]:
    """The paths of the blocks holding ``branches``, in order of first appearance."""
    return list(dict.fromkeys(b.block_path for b in branches))
