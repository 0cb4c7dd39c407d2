"""The original implementation's published schedules, shipped as data, loaded by name and fitted to a model.

Roblox/SmoothCache publishes nine schedules for DiT-XL/2 (Apache-2.0; see ``reference_schedules/NOTICE``):
FORA baselines (``50-N-2-fora``...), calibrated ones (``50-N-3-threshold-0.08``...), a per-block one
(``50-N-2-l2c``) and the diffusers example's ``diffuser_schedule``. Their keys name facebookresearch/DiT's
``DiTBlock`` branches (``attn``, ``mlp``); :func:`load_reference` maps them to another model's branch keys
(``attn1``, ``ff`` for diffusers' DiT) when given the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch.nn as nn

from .branches import parse_key
from .denoisers import as_denoiser
from .errors import ScheduleError
from .schedule import Schedule
from .targets import find_branches

__all__ = ["KEY_MAPS", "REFERENCE_DIR", "load_reference", "map_keys", "reference_names"]

#: Folder of the shipped schedules.
REFERENCE_DIR = Path(__file__).resolve().parent / "reference_schedules"

#: Branch keys of the original's DiT block -> the same branches in other block families.
KEY_MAPS: dict[str, dict[str, str]] = {
    "diffusers": {"attn": "attn1", "mlp": "ff"},  # BasicTransformerBlock (diffusers DiT, PixArt)
}


def reference_names() -> list[str]:
    """Names of the shipped schedules (file names without ``.json``)."""
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


def map_keys(schedule: Schedule, mapping: Mapping[str, str]) -> Schedule:
    """``schedule`` with its branch names renamed by ``mapping`` (per-block keys keep their block index)."""
    entries = {}
    for key, row in schedule.entries.items():
        name, block = parse_key(key)
        name = mapping.get(name, name)
        entries[name if block is None else f"{name}-{block}"] = row
    return Schedule(entries, {**schedule.metadata, "mapped": dict(mapping)}, predictor=schedule.predictor)


def load_reference(
    name: str, model: nn.Module | None = None, *, drop_missing_blocks: bool = False
) -> Schedule:
    """A shipped schedule by name, e.g. ``load_reference("50-N-3-threshold-0.08")``.

    Args:
        name: one of :func:`reference_names`.
        model: if given, the keys are mapped to this model's branches (``attn``->``attn1``, ``mlp``->``ff``
            for diffusers' DiT) and checked against it.
        drop_missing_blocks: drop per-block keys for blocks the model does not have (``50-N-2-l2c`` has 28
            blocks; a smaller DiT keeps the first ones) instead of raising.
    """
    names = reference_names()
    if not isinstance(name, str) or name not in names:  # a name, never a path ("../x", "/etc/x")
        raise ScheduleError(f"no shipped schedule named {name!r}; choose one of {names}")
    schedule = Schedule.load(REFERENCE_DIR / f"{name}.json")
    if model is None:
        return schedule
    model = as_denoiser(model)
    branches = find_branches(model)
    available = {b.key for b in branches}
    if not set(schedule.branch_keys) <= available:
        mapping = next(
            (m for m in KEY_MAPS.values() if {m.get(k, k) for k in schedule.branch_keys} <= available), None
        )
        if mapping is None:
            raise ScheduleError(
                f"schedule {name!r} names {schedule.branch_keys}; {type(model).__name__} has "
                f"{sorted(available)} "
                "and no known key mapping fits: use map_keys(schedule, {...}) yourself"
            )
        schedule = map_keys(schedule, mapping)
    if drop_missing_blocks:
        blocks = {(b.key, b.block) for b in branches}
        kept = {
            k: v for k, v in schedule.entries.items() if parse_key(k)[1] is None or parse_key(k) in blocks
        }
        schedule = Schedule(kept, schedule.metadata, predictor=schedule.predictor)
    return schedule
