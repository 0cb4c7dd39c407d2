"""Replace a module's ``forward`` and put back exactly what was there.

Forward *hooks* cannot skip a module's computation, so branches are wrapped by setting an instance
attribute ``forward`` (as diffusers' HookRegistry and accelerate do). The denoiser is wrapped the same
way, because facebookresearch/DiT's ``forward_with_cfg`` calls ``self.forward`` directly, past any hook.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["ForwardPatch", "owner_of", "restore_all"]

_OWNERS: "weakref.WeakKeyDictionary[Callable, object]" = weakref.WeakKeyDictionary()


def owner_of(module: nn.Module) -> object | None:
    """The owner (SmoothCache, Calibrator...) whose wrapper is ``module.forward`` or wrapped inside it, if any.

    Wrappers added on top by other libraries are followed through their ``__wrapped__`` attribute.
    """
    fn = module.__dict__.get("forward")
    for _ in range(32):
        if fn is None:
            return None
        try:
            owner = _OWNERS.get(fn)
        except TypeError:  # not weak-referenceable: not ours
            owner = None
        if owner is not None:
            return owner
        fn = getattr(fn, "__wrapped__", None)
    return None


class ForwardPatch:
    """``module.forward = make_wrapper(original_forward)``, undone exactly by :meth:`restore`."""

    def __init__(self, module: nn.Module, make_wrapper: Callable[[Callable], Callable], owner: object):
        self.module = module
        self._had_instance_forward = "forward" in module.__dict__
        self._saved = module.__dict__.get("forward")
        self.original = module.forward
        # never traced by torch.compile: the cache's Python state would become guards (see compile.py)
        self.wrapper = torch.compiler.disable(make_wrapper(self.original))
        _OWNERS[self.wrapper] = owner
        module.forward = self.wrapper

    def restore(self) -> None:
        """Put back the previous ``forward``.

        If accelerate or diffusers hooks were added on top of the wrapper after it was installed
        (offloading enabled after smoothcache), the wrapper is cut out of their chain instead, so their
        hooks keep working and later removing them gives back the original ``forward``. Anything else
        wrapped on top is an error; the owner then turns its wrappers into pass-throughs.
        """
        current = self.module.__dict__.get("forward")
        if current is self.wrapper:
            if self._had_instance_forward:
                self.module.forward = self._saved
            else:
                del self.module.forward
            _OWNERS.pop(self.wrapper, None)
            return
        if self._splice():
            return
        raise RuntimeError(
            f"{type(self.module).__name__}.forward was replaced by something else after smoothcache wrapped it; "
            "smoothcache's wrapper now passes calls straight through, but remove the other wrapper and "
            "disable smoothcache before it to restore the module exactly"
        )

    def _previous(self) -> Callable:
        return self._saved if self._had_instance_forward else self.original

    def _splice(self) -> bool:
        """Replace the wrapper inside an accelerate or diffusers hook chain; True if it was found there."""
        found = False
        if getattr(self.module, "_old_forward", None) is self.wrapper:  # accelerate add_hook_to_module
            self.module._old_forward = self._previous()
            found = True
        registry = getattr(self.module, "_diffusers_hook", None)  # diffusers HookRegistry
        for ref in getattr(registry, "_fn_refs", ()):
            for attr in ("forward", "original_forward"):
                if getattr(ref, attr, None) is self.wrapper:
                    setattr(ref, attr, self._previous())
                    found = True
        if found:
            _OWNERS.pop(self.wrapper, None)
        return found


def restore_all(patches: list[ForwardPatch]) -> None:
    """Restore every patch (innermost last-applied first), raising the first failure after trying all."""
    first_error: Exception | None = None
    for patch in reversed(patches):
        try:
            patch.restore()
        except Exception as err:  # keep restoring the others
            first_error = first_error or err
    patches.clear()
    if first_error is not None:
        raise first_error
