"""Making diffusers' cache hooks run on a ``DiTPipeline``: what the pipeline would have to supply, from
outside.

``DiTTransformer2DModel`` is not a ``CacheMixin`` and ``DiTPipeline`` neither opens a ``cache_context``, nor
exposes ``current_timestep``, nor resets stateful hooks between generations. A forward pre-hook on the
transformer (registered by :class:`HookSession`) records the ``timestep`` argument (0..999, high to low, the
scale the hooks' timestep ranges use), resets the stateful hooks at the start of each generation and sets a
``CacheContext`` for the hooks' ``StateManager``s. With batched CFG there is one transformer call per step, so
one context name covers both halves of the batch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from ..restore import restored

__all__ = ["CONTEXT_NAME", "HookSession"]

#: Name of the single cache context (batched CFG: one transformer call per step for both halves).
CONTEXT_NAME = "batched_cfg"


def _timestep_value(args: tuple, kwargs: dict) -> float:
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if t is None:
        raise ValueError("peers: the transformer was called without a timestep")
    return t.reshape(-1)[0].item() if torch.is_tensor(t) else t


def _swap_halves(x: Any) -> Any:
    if torch.is_tensor(x) and x.ndim >= 1 and x.shape[0] % 2 == 0 and x.shape[0] > 0:
        n = x.shape[0] // 2
        return torch.cat([x[n:], x[:n]], dim=0)
    return x


class HookSession:
    """Installs one diffusers cache on ``pipe.transformer`` and restores the pipeline exactly on exit.

    Args:
        pipe: a ``DiTPipeline`` (or any pipeline whose transformer takes ``timestep``).
        install: ``install(transformer, session)`` applies the cache (an ``apply_*`` call).
        record_timestep / set_context / reset: the outside help (all on by default); with all three off the
            cache is installed exactly as its ``apply_*`` function does and nothing else.
        swap_cfg_halves: present the CFG halves to the transformer as ``[uncond, cond]`` (FasterCache).

    ``generations`` counts the generations seen. A generation starts with the first call, a call whose
    timestep is above the previous one, or once the previous generation made as many calls as the scheduler
    has timesteps.
    """

    def __init__(self, pipe, install: Callable[[torch.nn.Module, "HookSession"], None], *,
                 record_timestep: bool = True, set_context: bool = True, reset: bool = True,
                 swap_cfg_halves: bool = False) -> None:
        self.pipe = pipe
        self.install = install
        self.record_timestep = record_timestep or set_context or reset
        self.set_context = set_context
        self.reset = reset
        self.swap_cfg_halves = swap_cfg_halves
        self.current_timestep: float | None = None
        self.step_index = -1
        self.generations = 0
        self.hooked: list[str] = []
        self._last_t: float | None = None
        self._stack: contextlib.ExitStack | None = None

    def timestep_callback(self) -> float:
        """The current transformer call's timestep (given to PAB / FasterCache as
        ``current_timestep_callback``)."""
        if self.current_timestep is None:
            raise RuntimeError("peers: no transformer call recorded yet")
        return self.current_timestep

    def _pre_forward(self, module, args, kwargs):
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        t = _timestep_value(args, kwargs)
        timesteps = getattr(getattr(self.pipe, "scheduler", None), "timesteps", None)  # none: a bare model
        num_steps = len(timesteps) if timesteps is not None else None
        if (self._last_t is None or t > self._last_t
                or (num_steps is not None and self.step_index + 1 >= num_steps)):
            if self.reset:
                HookRegistry.check_if_exists_or_initialize(module).reset_stateful_hooks(recurse=True)
            self.step_index = -1
            self.generations += 1
        self.step_index += 1
        self._last_t = t
        self.current_timestep = t
        if self.set_context:
            _set_cache_context(module, CacheContext(name=CONTEXT_NAME, step_index=self.step_index, timestep=t,
                                                    num_inference_steps=num_steps))
        return None

    @staticmethod
    def _swap_inputs(module, args, kwargs):
        # DiTPipeline batches [cond, uncond]; FasterCache assumes [uncond, cond] (it keeps the second half).
        args = tuple(_swap_halves(a) for a in args)
        kwargs = {k: _swap_halves(v) if k in ("hidden_states", "class_labels", "timestep") else v
                  for k, v in kwargs.items()}
        return args, kwargs

    @staticmethod
    def _swap_output(module, args, kwargs, output):
        if torch.is_tensor(output):
            return _swap_halves(output)
        if isinstance(output, tuple):
            return (_swap_halves(output[0]), *output[1:])
        output.sample = _swap_halves(output.sample)
        return output

    def __enter__(self) -> "HookSession":
        transformer = self.pipe.transformer
        with contextlib.ExitStack() as stack:
            stack.enter_context(restored(self.pipe))  # undoes every hook and attribute below on exit
            if self.record_timestep:
                transformer.register_forward_pre_hook(self._pre_forward, with_kwargs=True, prepend=True)
            if self.swap_cfg_halves:
                transformer.register_forward_pre_hook(self._swap_inputs, with_kwargs=True)
                transformer.register_forward_hook(self._swap_output, with_kwargs=True)
            self.install(transformer, self)
            self.hooked = [name for name, m in transformer.named_modules() if "_diffusers_hook" in vars(m)
                           and m._diffusers_hook._hook_order]
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
