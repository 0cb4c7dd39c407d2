"""The one wrapping mechanism: a denoiser, its branch modules and their blocks, and the policy acting on their
calls.

:class:`BranchHooks` owns everything that is the same for every technique: wrapping the ``forward`` of the
denoiser, of the branches and (for policies that ask) of the blocks holding them, restoring them exactly (also
after an exception), refusing a module another owner already wraps, following steps, CFG calls and generations
(:class:`~smoothcache.steps.StepTracker`, and the pipeline's return when a diffusers pipeline is calling),
numbering the calls of each branch within a denoiser call (cache slots), and the enable / disable / ``with``
lifecycle (:class:`Lifecycle`, shared by :class:`~smoothcache.Calibrator` and
:class:`~smoothcache.SmoothCache`).

A :class:`~smoothcache.policy.BranchPolicy` decides what one call does: record errors
(:mod:`smoothcache.calibration`), skip and predict (:mod:`smoothcache.cache`), count MACs
(:mod:`smoothcache.flops`); :class:`~smoothcache.policy.Chain` runs several as one.

Words: a branch's *index* is its position in ``hooks.branches``; a block's *position* is its position in
``hooks.blocks``; a branch's *block* (``Branch.block``) is its block's number within its family, as schedule
keys (``attn1-3``) count.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch.nn as nn

from .branches import Branch
from .compile import compiled_forward
from .denoisers import pipeline_call
from .patching import ForwardPatch, listen_for_return, owner_of, restore_all, stop_listening
from .policy import BranchPolicy, Chain
from .steps import StepTracker, find_timestep

__all__ = ["BranchHooks", "BranchPolicy", "Chain", "HookedBlock", "Lifecycle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookedBlock:
    """A block holding wrapped branches: its path, its module and the indices of its branches."""

    path: str
    module: nn.Module
    branches: tuple[int, ...]


def hooked_blocks(model: nn.Module, branches: Sequence[Branch]) -> list[HookedBlock]:
    """The blocks holding ``branches``, in order of first appearance."""
    modules = dict(model.named_modules())
    members: dict[str, list[int]] = {}
    for i, b in enumerate(branches):
        members.setdefault(b.block_path, []).append(i)
    return [
        HookedBlock(path, modules[path], tuple(idx))
        for path, idx in members.items()
        if path and path in modules
    ]


class BranchHooks:
    """Wrap ``model``, its ``branches`` (and their blocks if the policy asks) and route their calls to
    ``policy``.

    Args:
        model: the denoiser (``pipe.transformer``).
        branches: the branch modules to wrap (from :func:`~smoothcache.targets.find_branches`).
        policy: what each call does (a :class:`Chain` for several).
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        owner: the object named in messages and returned by :func:`~smoothcache.patching.owner_of`.

    ``with hooks:`` blocks nest (only the outermost exit restores the model); :meth:`enable` twice wraps
    once and :meth:`disable` always restores. A generation ends when the next one starts (the timestep jumps
    back), when the diffusers pipeline running it returns, on :meth:`reset` and on :meth:`disable`.
    """

    def __init__(
        self,
        model: nn.Module,
        branches: Sequence[Branch],
        policy: BranchPolicy,
        *,
        calls_per_step: int | None = None,
        owner: object | None = None,
    ):
        self.model = model
        self.branches = list(branches)
        self.owner = owner if owner is not None else self
        self.tracker = StepTracker(calls_per_step, on_generation_end=self._generation_ended)
        self.blocks = hooked_blocks(model, self.branches)
        self._patches: list[ForwardPatch] = []
        self._pipelines: list[Any] = []
        self._occurrences = [0] * len(self.branches)
        self._block_occurrences = [0] * len(self.blocks)
        self._with_depth = 0
        #: why the last generation ended: a key of :data:`smoothcache.generation.ENDINGS` ("returned" when its
        #: pipeline returned, "next generation", "reset", "disabled", "not returned", "interrupted")
        self.end_reason = ""
        #: how many steps the generation that ended last ran
        self.last_steps = 0
        self._ending = ""
        #: the arguments of the pipeline call running the current generation (``guidance_scale``,
        #: ``num_inference_steps``), when a diffusers pipeline runs it
        self.arguments: dict[str, Any] = {}
        #: for a policy that ``wants_inputs``: the pipeline, its call's parameters and the denoiser's first
        #: call's arguments, of the current generation
        self.inputs: dict[str, Any] = {}
        self._caller: int | None = None  # the thread in the running denoiser call
        self._generation_thread: int | None = None  # the thread whose generation is running
        self.policy = policy
        policy.attach(self)

    def __repr__(self) -> str:
        return wrapper_repr(self, type(self.policy).__name__)

    # ------------------------------------------------------------------- state
    @property
    def enabled(self) -> bool:
        return bool(self._patches)

    @property
    def step(self) -> int:
        """The current denoising step (-1 before the first call of a generation)."""
        return self.tracker.step

    @property
    def call(self) -> int:
        """The CFG call within the current step."""
        return self.tracker.call

    def calls_of(self, index: int) -> int:
        """How many times branch ``index`` was called in the current denoiser call so far."""
        return self._occurrences[index]

    @property
    def time(self) -> float:
        """The current step's timestep (or sigma) as the denoiser received it."""
        return self.tracker.time

    # --------------------------------------------------------------- lifecycle
    def enable(self) -> "BranchHooks":
        """Wrap the model; calling it again while enabled does nothing."""
        if self._patches:
            return self
        if self.tracker.detached:
            raise RuntimeError(
                f"this {type(self.owner).__name__} could not be removed from the model earlier; make a new "
                "one"
            )
        modules = [self.model] + [b.module for b in self.branches]
        if self.policy.wants_blocks:
            modules += [g.module for g in self.blocks]
        for module in modules:
            owner = owner_of(module)
            if owner is not None:
                raise RuntimeError(
                    f"{type(module).__name__} is already wrapped by another {type(owner).__name__}; disable "
                    "it first: its .disable(), or smoothcache.disable(pipe) (or smoothcache.disable(model)), "
                    "which releases every smoothcache wrapping of the model, even of an object you no longer "
                    "hold"
                )
        self.tracker.reset()
        self.policy.start()
        try:
            self._patches.append(ForwardPatch(self.model, self._wrap_denoiser, self.owner))
            for i, b in enumerate(self.branches):
                self._patches.append(
                    ForwardPatch(b.module, self._wrapper(i, b.module, self._branch_call), self.owner)
                )
            if self.policy.wants_blocks:
                wrapped = {id(p.module) for p in self._patches}
                for j, g in enumerate(self.blocks):
                    if id(g.module) not in wrapped:
                        self._patches.append(
                            ForwardPatch(g.module, self._wrapper(j, g.module, self._block_call), self.owner)
                        )
        except Exception:
            restore_all(self._patches)
            raise
        return self

    def disable(self, *, interrupted: bool = False) -> None:
        """End the running generation (dropped if ``interrupted``) and restore the model exactly."""
        if not self._patches:
            return
        try:
            if interrupted:
                self._drop()
            else:
                self._ending = "disabled"
                self.tracker.finish()
        finally:
            try:
                self.policy.stop(interrupted)
            finally:
                for pipe in self._pipelines:
                    stop_listening(pipe, self)
                self._pipelines.clear()
                try:
                    restore_all(self._patches)
                except Exception:
                    self.tracker.detached = True  # wrappers left in place pass calls straight through
                    raise

    def reset(self) -> None:
        """End the current generation: the next denoiser call is step 0 of a new one."""
        self._ending = "reset"
        self.tracker.finish()

    def __enter__(self) -> "BranchHooks":
        self.enable()
        self._with_depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._with_depth -= 1
        if self._with_depth > 0:  # an inner block of a nested `with`: the outer one still runs
            if exc_type is not None:
                self._drop()
            return
        self.disable(interrupted=exc_type is not None)

    def _generation_ended(self, steps: int, timesteps: list) -> None:
        self.end_reason, self._ending = self._ending or "next generation", ""
        self._generation_thread = None
        self.last_steps = steps
        if self.end_reason == "next generation" and self.pipeline is not None:
            # a pipeline ends its generations when it returns: this one did not (an exception between steps
            # caught outside, another generation started on the model before it ended...), so it is dropped
            # rather than taken as a whole generation
            logger.warning(
                "%s on %s: a generation of %d step(s) did not return through its pipeline before the next "
                "one started (it stopped early, or two generations ran interleaved on one model): dropped",
                type(self.owner).__name__, type(self.model).__name__, steps,
            )
            self.end_reason = "not returned"
            self.policy.drop_generation()
            return
        self.policy.end_generation(steps, timesteps)

    def _drop(self) -> None:
        """Abandon the running generation: nothing of it is kept, and the next call starts a new one."""
        self.last_steps, self.end_reason = self.tracker.step + 1, "interrupted"
        self.tracker.reset()
        self._generation_thread = None
        self.policy.drop_generation()

    def _busy(self, what: str) -> str:
        return (
            f"{type(self.owner).__name__} on {type(self.model).__name__} {what} in another thread: one cache "
            "serves one generation at a time (use one model copy and cache per thread, or a lock); if that "
            "generation is over, call reset() on the cache"
        )

    @property
    def pipeline(self) -> Any | None:
        """The diffusers pipeline seen running the model (None if none was)."""
        return self._pipelines[0] if self._pipelines else None

    def _watch_pipeline(self, args: tuple, kwargs: dict) -> None:
        """At a generation's first call: read the arguments of the pipeline call running it (all of them, and
        the denoiser's input, for a policy that ``wants_inputs``), and (once) end generations when the
        diffusers pipeline running them returns."""
        pipe, self.arguments = pipeline_call(self.model)
        if self.policy.wants_inputs:
            self.inputs = {"pipeline": pipe, "call": pipeline_call(self.model, everything=True)[1],
                           "args": args, "kwargs": kwargs}
        if pipe is not None and not self._pipelines:
            self._pipelines.append(pipe)
            listen_for_return(pipe, self, self._pipeline_returned)

    def _pipeline_returned(self) -> None:
        if self.tracker.depth == 0 and self._patches:
            self._ending = "returned"
            self.tracker.finish()

    # ---------------------------------------------------------------- wrappers
    def _wrap_denoiser(self, original: Callable) -> Callable:
        tracker = self.tracker

        def forward(*args, **kwargs):
            if tracker.detached:
                return original(*args, **kwargs)
            me = threading.get_ident()
            if tracker.depth > 0:
                if self._caller == me:  # a nested call (DiT's forward_with_cfg -> forward)
                    return original(*args, **kwargs)
                raise RuntimeError(self._busy("is in a denoiser call"))
            if self._generation_thread not in (None, me):
                raise RuntimeError(self._busy("has a generation running"))
            tracker.advance(find_timestep(args, kwargs))
            self._generation_thread = me
            if tracker.step == 0 and tracker.call == 0:
                self._watch_pipeline(args, kwargs)
            self._occurrences = [0] * len(self.branches)
            self._block_occurrences = [0] * len(self.blocks)
            tracker.depth, self._caller = tracker.depth + 1, me
            try:
                context = self.policy.begin_call()
                if context is None:
                    return original(*args, **kwargs)
                with context:
                    return original(*args, **kwargs)
            except BaseException:  # an error or an interrupt: nothing of this generation is kept
                self._drop()
                raise
            finally:
                tracker.depth -= 1
                if tracker.depth == 0:
                    self._caller = None

        return forward

    def _branch_call(self, index: int, fn: Callable, args: tuple, kwargs: dict) -> Any:
        occurrence = self._occurrences[index]
        self._occurrences[index] = occurrence + 1
        return self.policy.on_branch(index, (self.tracker.call, occurrence), fn, args, kwargs)

    def _block_call(self, position: int, fn: Callable, args: tuple, kwargs: dict) -> Any:
        occurrence = self._block_occurrences[position]
        self._block_occurrences[position] = occurrence + 1
        return self.policy.on_block(position, (self.tracker.call, occurrence), fn, args, kwargs)

    def _wrapper(self, where: int, module: nn.Module, route: Callable) -> Callable[[Callable], Callable]:
        tracker = self.tracker

        def make(original: Callable) -> Callable:
            def forward(*args, **kwargs):
                fn = compiled_forward(module, original)
                # outside a denoiser call (or another thread's): nothing to follow
                if tracker.depth == 0 or tracker.detached or self._caller != threading.get_ident():
                    return fn(*args, **kwargs)
                return route(where, fn, args, kwargs)

            return forward

        return make


def wrapper_repr(wrapper, *parts: str) -> str:
    """``Name(ModelClass, N branches, parts..., enabled|disabled)``: what printing a wrapper shows."""
    state = "enabled" if wrapper.enabled else "disabled"
    fields = [type(wrapper.model).__name__, f"{len(wrapper.branches)} branches", *parts, state]
    return f"{type(wrapper).__name__}({', '.join(fields)})"


class Lifecycle:
    """enable / disable / ``with`` / reset of an object that wraps a model through ``self.hooks``."""

    hooks: BranchHooks

    @property
    def enabled(self) -> bool:
        return self.hooks.enabled

    @property
    def branches(self) -> list[Branch]:
        """The wrapped branches."""
        return self.hooks.branches

    @property
    def step(self) -> int:
        """Index of the current denoising step (-1 before the first call of a generation)."""
        return self.hooks.step

    def enable(self):
        """Wrap the model. Calling it again while enabled does nothing."""
        self.hooks.enable()
        return self

    def disable(self) -> None:
        """End the running generation and restore the model exactly as it was."""
        self.hooks.disable()

    def reset(self) -> None:
        """End the current generation: the next denoiser call is step 0 of a new one."""
        self.hooks.reset()

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.hooks.__exit__(exc_type, exc, tb)
