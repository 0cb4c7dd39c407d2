"""Snapshot a pipeline before a peer hooks it and put everything back exactly afterwards.

Peers install themselves in different ways: diffusers' hooks replace ``forward`` on modules and add a
``_diffusers_hook`` registry; cache-dit replaces the transformer's ``forward``, registers an extra submodule
(``_norm1_emb``), sets statistics attributes on the block list and patches the pipeline *class*'s
``__call__``. Their own removal functions do not undo all of it, so :func:`restored` records, on entry, every
object a peer may touch -- each module of the transformer (its ``__dict__``, submodule / parameter / buffer
dicts, torch hook dicts, parameter version counters), the pipeline instance and the pipeline and transformer
classes -- and on exit removes what was added and puts back what was replaced, then checks the result.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Iterator

import torch

__all__ = ["Snapshot", "is_pristine", "restored"]

#: Dicts inside ``nn.Module.__dict__`` whose *contents* peers change (the dict objects themselves stay).
_CONTAINERS = (
    "_modules", "_parameters", "_buffers", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks",
    "_backward_pre_hooks",
)
_HOOK_DICTS = _CONTAINERS[3:]

_ACTIVE: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


@dataclass
class _State:
    """One object's attributes (identity of every value) and the contents of its module dicts."""

    obj: object
    attrs: dict
    containers: dict

    @classmethod
    def of(cls, obj: object) -> "_State":
        d = vars(obj)
        return cls(obj, dict(d), {n: dict(d[n]) for n in _CONTAINERS if isinstance(d.get(n), dict)})

    def differences(self, label: str) -> list[str]:
        d, out = vars(self.obj), []
        added, removed = set(d) - set(self.attrs), set(self.attrs) - set(d)
        if added:
            out.append(f"{label}: attributes added {sorted(added)}")
        if removed:
            out.append(f"{label}: attributes removed {sorted(removed)}")
        changed = [k for k in set(d) & set(self.attrs) if d[k] is not self.attrs[k]]
        if changed:
            out.append(f"{label}: attributes replaced {sorted(changed)}")
        for name, saved in self.containers.items():
            now = d.get(name, {})
            if now.keys() != saved.keys() or any(now[k] is not v for k, v in saved.items()):
                out.append(f"{label}.{name}: {sorted(set(now) ^ set(saved)) or 'entries replaced'}")
        return out

    def restore(self) -> None:
        if isinstance(self.obj, type):  # a class: its __dict__ is read-only, go through setattr / delattr
            for k in set(vars(self.obj)) - set(self.attrs):
                delattr(self.obj, k)
            for k, v in self.attrs.items():
                if vars(self.obj).get(k) is not v:
                    setattr(self.obj, k, v)
            return
        d = vars(self.obj)
        for k in set(d) - set(self.attrs):
            del d[k]
        for k, v in self.attrs.items():
            if d.get(k) is not v:
                d[k] = v
        for name, saved in self.containers.items():
            now = d[name]
            if now.keys() != saved.keys() or any(now[k] is not v for k, v in saved.items()):
                now.clear()
                now.update(saved)


class Snapshot:
    """Everything a peer may change on ``pipe``: see the module docstring.

    Args:
        pipe: a pipeline with a ``transformer``.
    """

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.names = [(name, m) for name, m in self.transformer.named_modules()]
        self.states = [
            (f"transformer.{name}" if name else "transformer", _State.of(m)) for name, m in self.names
        ]
        self.states += [
            ("pipeline", _State.of(pipe)),
            (f"class {type(pipe).__name__}", _State.of(type(pipe))),
            (f"class {type(self.transformer).__name__}", _State.of(type(self.transformer))),
        ]
        self.versions = {name: p._version for name, p in self.transformer.named_parameters()}

    def restore(self) -> None:
        """Remove what was added, put back what was replaced (the transformer attribute of the pipe
        included)."""
        for _, state in reversed(self.states):
            state.restore()

    def differences(self) -> list[str]:
        """What differs from the snapshot now; empty when the pipeline is exactly as it was."""
        out = []
        if self.pipe.transformer is not self.transformer:
            out.append("pipeline.transformer replaced")
        now = list(self.transformer.named_modules())
        if [n for n, _ in now] != [n for n, _ in self.names] or any(
            a is not b for (_, a), (_, b) in zip(now, self.names)
        ):
            out.append("transformer: module tree differs")
        for label, state in self.states:
            out += state.differences(label)
        versions = {name: p._version for name, p in self.transformer.named_parameters()}
        if versions != self.versions:
            out.append("transformer: parameters changed in place")
        return out


@contextlib.contextmanager
def restored(pipe) -> Iterator[Snapshot]:
    """Undo on exit whatever is done inside to ``pipe`` and its transformer; raise if that fails.

    Refuses to nest on one transformer (a peer installed over another could not be undone in order).

    Args:
        pipe: a pipeline with a ``transformer``.
    """
    transformer = pipe.transformer
    if transformer in _ACTIVE:
        raise RuntimeError("a peer is already applied to this transformer")
    snapshot = Snapshot(pipe)
    _ACTIVE.add(transformer)
    try:
        yield snapshot
    finally:
        snapshot.restore()
        _ACTIVE.discard(transformer)
        problems = snapshot.differences()
        if problems:
            raise RuntimeError(
                "the pipeline could not be restored to its state before apply(): " + "; ".join(problems)
            )


def is_pristine(transformer: torch.nn.Module) -> bool:
    """No module of ``transformer`` carries an instance ``forward``, a ``_diffusers_hook`` registry or a torch
    hook."""
    for m in transformer.modules():
        if "forward" in vars(m) or "_diffusers_hook" in vars(m):
            return False
        if any(len(getattr(m, name, {})) for name in _HOOK_DICTS):
            return False
    return True
