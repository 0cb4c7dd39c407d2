"""Replace a module's ``forward`` and put back exactly what was there.

Forward *hooks* cannot skip a module's computation, so branches are wrapped by setting an instance
attribute ``forward`` (as diffusers' HookRegistry and accelerate do). The denoiser is wrapped the same
way, because facebookresearch/DiT's ``forward_with_cfg`` calls ``self.forward`` directly, past any hook.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

__all__ = ["ForwardPatch", "owner_of"]

_OWNER_ATTR = "_smoothcache_owner"


def owner_of(module: nn.Module) -> object | None:
    """The SmoothCache or Calibrator whose wrapper is currently ``module.forward``, if any."""
    return getattr(module.__dict__.get("forward"), _OWNER_ATTR, None)


class ForwardPatch:
    """``module.forward = make_wrapper(original_forward)``, undone exactly by :meth:`restore`."""

    def __init__(self, module: nn.Module, make_wrapper: Callable[[Callable], Callable], owner: object):
        self.module = module
        self._had_instance_forward = "forward" in module.__dict__
        self._saved = module.__dict__.get("forward")
        self.original = module.forward
        self.wrapper = make_wrapper(self.original)
        setattr(self.wrapper, _OWNER_ATTR, owner)
        module.forward = self.wrapper

    @property
    def active(self) -> bool:
        return self.module.__dict__.get("forward") is self.wrapper

    def restore(self) -> None:
        """Put back the previous ``forward``; raise if someone else wrapped the module on top of us."""
        current = self.module.__dict__.get("forward")
        if current is not self.wrapper:
            raise RuntimeError(
                f"{type(self.module).__name__}.forward was replaced by something else after smoothcache wrapped "
                "it (another hook or offloading added later?); remove that first, then disable smoothcache"
            )
        if self._had_instance_forward:
            self.module.forward = self._saved
        else:
            del self.module.forward


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
