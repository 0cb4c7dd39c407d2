"""Policies: what a wrapped call does. :class:`BranchPolicy` is the protocol the mechanism
(:class:`~smoothcache.hooks.BranchHooks`) calls; :class:`Chain` runs several policies as one."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

__all__ = ["BranchPolicy", "Chain", "Slot"]

#: ``(cfg_call, occurrence)``: outputs are kept apart per CFG call of a step and per repeated call within one
#: denoiser call.
Slot = tuple[int, int]


class BranchPolicy:
    """What a wrapped call does. Subclasses override the methods they need.

    The mechanism calls :meth:`attach` once, :meth:`start` on enable, :meth:`begin_call` at each (outermost)
    denoiser call once its step is known, :meth:`on_branch` at each branch call inside it (and
    :meth:`on_block` at each block call, if ``wants_blocks``), :meth:`end_generation` when a generation ends,
    and :meth:`stop` on disable. ``self.hooks`` is the :class:`BranchHooks` it runs in (``hooks.step``,
    ``hooks.time``, ``hooks.call``).
    """

    hooks: Any  #: the :class:`~smoothcache.hooks.BranchHooks` the policy runs in
    #: True: the mechanism also wraps the blocks holding the branches and routes their calls to
    # :meth:`on_block`.
    wants_blocks: bool = False
    #: True: at each generation's first call the mechanism keeps the pipeline call's parameters and the
    #: denoiser's arguments in ``hooks.inputs`` (to run the same generation again).
    wants_inputs: bool = False

    def attach(self, hooks) -> None:
        """The policy is put into ``hooks`` (once)."""
        self.hooks = hooks

    def start(self) -> None:
        """The model was just wrapped: start from a clean state."""

    def begin_call(self) -> ContextManager | None:
        """A denoiser call starts; the context returned (if any) is held around it."""
        return None

    def on_branch(self, index: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Branch ``index`` is called inside a denoiser call; ``fn(*args, **kwargs)`` computes it."""
        return fn(*args, **kwargs)

    def on_block(self, position: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """The block at ``position`` in ``hooks.blocks`` is called (only if ``wants_blocks``)."""
        return fn(*args, **kwargs)

    def end_generation(self, steps: int, timesteps: list) -> None:
        """A generation of ``steps`` steps ended."""

    def drop_generation(self) -> None:
        """The running generation was abandoned (an exception, an interrupt): forget it, keep nothing of
        it."""

    def stop(self, interrupted: bool) -> None:
        """The model is about to be restored; ``interrupted`` when an exception ended the run."""


class Chain(BranchPolicy):
    """Several policies as one; the first is outermost (its ``fn`` runs the next)."""

    def __init__(self, policies: Sequence[BranchPolicy]):
        self.policies = list(policies)
        if not self.policies:
            raise ValueError("Chain needs at least one policy")
        self.wants_blocks = any(p.wants_blocks for p in self.policies)

    def attach(self, hooks) -> None:
        super().attach(hooks)
        for policy in self.policies:
            policy.attach(hooks)

    def start(self) -> None:
        for policy in self.policies:
            policy.start()

    @contextlib.contextmanager
    def _calls(self):
        with contextlib.ExitStack() as stack:
            for policy in self.policies:
                context = policy.begin_call()
                if context is not None:
                    stack.enter_context(context)
            yield

    def begin_call(self) -> ContextManager:
        return self._calls()

    def _run(
        self, method: str, level: int, where: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict
    ) -> Any:
        policy = self.policies[level]
        if level + 1 == len(self.policies):
            return getattr(policy, method)(where, slot, fn, args, kwargs)

        def inner(*a, **k):
            return self._run(method, level + 1, where, slot, fn, a, k)

        return getattr(policy, method)(where, slot, inner, args, kwargs)

    def on_branch(self, index: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return self._run("on_branch", 0, index, slot, fn, args, kwargs)

    def on_block(self, position: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return self._run("on_block", 0, position, slot, fn, args, kwargs)

    def end_generation(self, steps: int, timesteps: list) -> None:
        for policy in self.policies:
            policy.end_generation(steps, timesteps)

    def drop_generation(self) -> None:
        for policy in self.policies:
            policy.drop_generation()

    def stop(self, interrupted: bool) -> None:
        for policy in self.policies:
            policy.stop(interrupted)
