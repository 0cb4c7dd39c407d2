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

__all__ = ["ForwardPatch", "listen_for_return", "owner_of", "owners_in", "restore_all", "stop_listening"]

_OWNERS: "weakref.WeakKeyDictionary[Callable, object]" = weakref.WeakKeyDictionary()


def owner_of(module: nn.Module) -> object | None:
    """The owner (SmoothCache, Calibrator...) whose wrapper is ``module.forward`` or wrapped inside it, if
    any.

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


def owners_in(model: nn.Module) -> dict[object, int]:
    """Every owner whose wrapper is on ``model`` or one of its submodules, with how many modules it wraps."""
    found: dict[int, list] = {}
    for module in model.modules():
        owner = owner_of(module)
        if owner is not None:
            found.setdefault(id(owner), [owner, 0])[1] += 1
    return {owner: count for owner, count in found.values()}


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
            f"{type(self.module).__name__}.forward was replaced by something else after smoothcache wrapped "
            "it; "
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


# ----------------------------------------------------------------------------------------------------------
# The end of a pipeline call. Every diffusers pipeline calls ``self.maybe_free_model_hooks()`` when a
# generation returns; while someone listens, that method of the pipeline instance is wrapped to tell them.

_LISTENERS: dict[int, tuple[object, dict[int, Callable[[], None]], Callable, object]] = {}
_ABSENT = object()


def listen_for_return(pipe: object, key: object, callback: Callable[[], None]) -> None:
    """Call ``callback()`` each time ``pipe`` returns from a generation, until :func:`stop_listening`."""
    entry = _LISTENERS.get(id(pipe))
    if entry is None:
        saved = pipe.__dict__.get("maybe_free_model_hooks", _ABSENT)
        original = pipe.maybe_free_model_hooks
        callbacks: dict[int, Callable[[], None]] = {}

        def maybe_free_model_hooks(*args, **kwargs):
            try:
                return original(*args, **kwargs)
            finally:
                for listener in list(callbacks.values()):
                    listener()

        maybe_free_model_hooks.__wrapped__ = original
        pipe.maybe_free_model_hooks = maybe_free_model_hooks
        entry = _LISTENERS[id(pipe)] = (pipe, callbacks, maybe_free_model_hooks, saved)
    entry[1][id(key)] = callback


def stop_listening(pipe: object, key: object) -> None:
    """Stop calling ``key``'s callback; the pipeline's own method is put back when nobody listens any more."""
    entry = _LISTENERS.get(id(pipe))
    if entry is None:
        return
    _, callbacks, wrapper, saved = entry
    callbacks.pop(id(key), None)
    if callbacks:
        return
    del _LISTENERS[id(pipe)]
    if pipe.__dict__.get("maybe_free_model_hooks") is wrapper:
        if saved is _ABSENT:
            del pipe.maybe_free_model_hooks
        else:
            pipe.maybe_free_model_hooks = saved
