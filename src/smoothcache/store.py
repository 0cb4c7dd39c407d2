"""Kept outputs: the last computed outputs of each branch (or fused block) and CFG call, to predict from.

The branch cache and block fusion keep their computed outputs here, each entry with the time variable of its
step, in a lower precision if asked, and with the version counters of its tensors so that an output the model
edited in place after returning it is caught instead of reused.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Hashable

import torch

from .outputs import cast, cast_back, dtypes, nbytes, versions

__all__ = ["Kept", "KeptOutputs", "unmodified"]


class Kept:
    """One computed output kept for prediction: its step time, the (possibly lower-precision) output, and
    what is needed to check and restore it."""

    __slots__ = ("time", "out", "versions", "dtypes", "nbytes")

    def __init__(self, time: float, out: Any, dtype: torch.dtype | None):
        self.dtypes = None if dtype is None else dtypes(out)
        self.out = out if dtype is None else cast(out, dtype)
        self.time = time
        self.versions = versions(self.out)
        self.nbytes = nbytes(self.out)

    def restored(self, out: Any) -> Any:
        """``out`` (a prediction made from kept outputs like this one) in the computed outputs' dtypes."""
        return out if self.dtypes is None else cast_back(out, self.dtypes)


class KeptOutputs:
    """The last ``keep`` computed outputs per owner and slot (CFG call, repeat).

    An owner is a tuple whose first item is its kind (``("branch", 3)``, ``("run", 0)``); bytes are counted
    per kind. Outputs are kept per input shape: a call whose input shape differs from the kept outputs'
    starts over.

    Args:
        keep: outputs kept per owner and slot (one for ``reuse``, two for ``linear``).
        dtype: keep outputs in this precision (None: as computed).
    """

    def __init__(self, keep: int, dtype: torch.dtype | None = None):
        self.keep = keep
        self.dtype = dtype
        self._slots: dict[Hashable, tuple[Any, deque[Kept]]] = {}
        self.bytes_by_kind: dict[str, int] = {}
        self.peak_bytes = 0

    @property
    def nbytes(self) -> int:
        """The bytes held now."""
        return sum(self.bytes_by_kind.values())

    def __len__(self) -> int:
        """The number of outputs held."""
        return sum(len(kept) for _, kept in self._slots.values())

    def sources(self, owner: Hashable, slot: Hashable, shape: Any) -> deque[Kept] | None:
        """The kept outputs of ``owner`` in ``slot`` for inputs of ``shape``, oldest first (None if there are
        none)."""
        held = self._slots.get((owner, slot))
        if held is None or held[0] != shape:
            return None
        return held[1]

    def holds(self, owner: Hashable, slot: Hashable) -> bool:
        """True if outputs of ``owner`` in ``slot`` are kept (for any input shape)."""
        return (owner, slot) in self._slots

    def add(self, owner: tuple, slot: Hashable, shape: Any, time: float, out: Any) -> None:
        """Keep ``out`` (computed at ``time`` for inputs of ``shape``), dropping the oldest beyond
        ``keep``."""
        held = self._slots.get((owner, slot))
        change = 0
        if held is None or held[0] != shape:
            if held is not None:
                change -= sum(k.nbytes for k in held[1])
            held = (shape, deque(maxlen=self.keep))
            self._slots[(owner, slot)] = held
        kept = held[1]
        if len(kept) == self.keep:
            change -= kept[0].nbytes
        entry = Kept(time, out, self.dtype)
        kept.append(entry)
        kind = owner[0]
        self.bytes_by_kind[kind] = self.bytes_by_kind.get(kind, 0) + change + entry.nbytes
        self.peak_bytes = max(self.peak_bytes, self.nbytes)

    def drop(self, owner: tuple) -> None:
        """Drop the outputs kept for ``owner`` (every slot)."""
        for key in [k for k in self._slots if k[0] == owner]:
            _, kept = self._slots.pop(key)
            self.bytes_by_kind[owner[0]] -= sum(e.nbytes for e in kept)

    def keep_only(self, kind: str, owners: set) -> None:
        """Drop the outputs kept for owners of ``kind`` that are not in ``owners``."""
        for owner in {k[0] for k in self._slots if k[0][0] == kind and k[0] not in owners}:
            self.drop(owner)

    def clear(self) -> None:
        """Drop every kept output (the peak is remembered)."""
        self._slots.clear()
        self.bytes_by_kind.clear()


def unmodified(kept: deque[Kept]) -> bool:
    """True if no kept output was modified in place since it was kept."""
    return all(versions(entry.out) == entry.versions for entry in kept)
