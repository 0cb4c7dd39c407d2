"""The one wrapping mechanism: a denoiser and its branch modules, and the policies that act on branch calls.

:class:`BranchHooks` owns everything that is the same for every technique: wrapping the denoiser's and the
branches' ``forward`` (and restoring them exactly, also after an exception), refusing a module another owner
already wraps, following steps and CFG calls from the timesteps (:class:`~smoothcache.steps.StepTracker`),
numbering the calls of each branch within a denoiser call (cache slots), and the ``with`` / enable / disable
lifecycle. A :class:`BranchPolicy` decides what one branch call does: compute and record errors
(:class:`~smoothcache.calibration.ErrorRecorder`), skip and predict (:class:`~smoothcache.cache.ScheduledCache`),
or count MACs (:class:`~smoothcache.flops.MacMeter`). Several policies chain, the first outermost. A policy
that sets ``wants_blocks`` also sees the calls of the blocks holding the branches (:meth:`BranchPolicy.block`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import torch.nn as nn

from .compile import compiled_forward
from .patching import ForwardPatch, owner_of, restore_all
from .steps import StepTracker
from .targets import Branch, find_timestep

__all__ = ["BlockGroup", "BranchHooks", "BranchPolicy"]

#: ``(cfg_call, occurrence)``: a branch's output is kept apart per CFG call of a step and per repeated call
#: of the branch within one denoiser call.
Slot = tuple[int, int]


@dataclass(frozen=True)
class BlockGroup:
    """A block that holds wrapped branches: its path, module and the indices of its branches in ``hooks.branches``."""

    path: str
    module: nn.Module
    branches: tuple[int, ...]


def block_groups(model: nn.Module, branches: Sequence[Branch]) -> list[BlockGroup]:
    """The blocks of ``branches`` in model order (a branch's block is ``block_path``, else its parent)."""
    modules = dict(model.named_modules())
    members: dict[str, list[int]] = {}
    for i, b in enumerate(branches):
        members.setdefault(b.block_path or b.path.rpartition(".")[0], []).append(i)
    return [BlockGroup(path, modules[path], tuple(idx)) for path, idx in members.items() if path in modules and path]


class BranchPolicy:
    """What a wrapped branch call does. Subclasses override the methods they need.

    The mechanism calls :meth:`start` on enable, :meth:`begin_call` at each (outermost) denoiser call after
    the step is known, :meth:`branch` at each branch call inside it, :meth:`end_generation` when a
    generation ends, and :meth:`stop` on disable. ``self.hooks`` is the :class:`BranchHooks` it runs in
    (read ``hooks.step``, ``hooks.time``, ``hooks.call``).
    """

    hooks: "BranchHooks"
    #: True: the mechanism also wraps the blocks holding the branches and routes their calls to :meth:`block`.
    wants_blocks: bool = False

    def attach(self, hooks: "BranchHooks") -> None:
        """Called once when the policy is put into ``hooks``."""
        self.hooks = hooks

    def start(self) -> None:
        """The model was just wrapped: start from a clean state."""

    def begin_call(self) -> ContextManager | None:
        """A denoiser call starts; the context returned (if any) is held around it."""
        return None

    def branch(self, index: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Branch ``index`` is called inside a denoiser call; ``fn(*args, **kwargs)`` computes it."""
        return fn(*args, **kwargs)

    def block(self, index: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Block ``index`` of ``hooks.blocks`` is called (only if ``wants_blocks``); ``fn`` computes it."""
        return fn(*args, **kwargs)

    def end_generation(self, steps: int, timesteps: list) -> None:
        """A generation of ``steps`` steps ended (a new one started, or :meth:`BranchHooks.reset`)."""

    def stop(self, interrupted: bool) -> None:
        """The model is about to be restored; ``interrupted`` when an exception ended the run."""


class BranchHooks:
    """Wrap ``model`` and its ``branches`` and route every branch call through ``policies``.

    Args:
        model: the denoiser (``pipe.transformer``).
        branches: the branch modules to wrap (from :func:`~smoothcache.targets.find_branches`).
        policies: what each branch call does; the first is outermost.
        calls_per_step: denoiser calls per step, for samplers whose timesteps cannot tell steps apart.
        owner: the object named in messages and returned by :func:`~smoothcache.patching.owner_of`.
        on_generation_end: called with ``(steps, timesteps)`` after the policies saw a generation end.

    ``with hooks:`` blocks nest (only the outermost exit restores the model); :meth:`enable` twice wraps
    once and :meth:`disable` always restores.
    """

    def __init__(
        self,
        model: nn.Module,
        branches: Sequence[Branch],
        policies: Sequence[BranchPolicy],
        *,
        calls_per_step: int | None = None,
        owner: object | None = None,
        on_generation_end: Callable[[int, list], None] | None = None,
    ):
        self.model = model
        self.branches = list(branches)
        self.owner = owner if owner is not None else self
        self.on_generation_end = on_generation_end
        self.tracker = StepTracker(calls_per_step, on_generation_end=self._generation_ended)
        self._patches: list[ForwardPatch] = []
        self._occurrences = [0] * len(self.branches)
        self.blocks = block_groups(model, self.branches)
        self._block_occurrences = [0] * len(self.blocks)
        self._with_depth = 0
        self.set_policies(policies)

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        names = "+".join(type(p).__name__ for p in self.policies)
        return f"BranchHooks({type(self.model).__name__}, {len(self.branches)} branches, {names}, {state})"

    # ---------------------------------------------------------------- policies
    def set_policies(self, policies: Sequence[BranchPolicy]) -> None:
        """Replace the policies (e.g. calibration, then caching); do it between generations."""
        policies = list(policies)
        if not policies:
            raise ValueError("BranchHooks needs at least one policy")
        for policy in policies:
            policy.attach(self)
        self.policies = policies
        self._dispatch = policies[0].branch if len(policies) == 1 else self._chained
        self._block_policies = [p for p in policies if p.wants_blocks]
        if self.enabled:
            for policy in policies:
                policy.start()
            if self._block_policies:
                self._wrap_blocks()

    def _chained(self, index: int, slot: Slot, fn: Callable, args: tuple, kwargs: dict, _level: int = 0,
                 _method: str = "branch", _policies: Sequence[BranchPolicy] | None = None) -> Any:
        policies = self.policies if _policies is None else _policies
        policy = policies[_level]
        if _level + 1 == len(policies):
            return getattr(policy, _method)(index, slot, fn, args, kwargs)

        def inner(*a, **k):
            return self._chained(index, slot, fn, a, k, _level + 1, _method, policies)

        return getattr(policy, _method)(index, slot, inner, args, kwargs)

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
                f"this {type(self.owner).__name__} could not be removed from the model earlier; make a new one"
            )
        for module in [self.model] + [b.module for b in self.branches] + [g.module for g in self.blocks]:
            owner = owner_of(module)
            if owner is not None:
                raise RuntimeError(
                    f"{type(module).__name__} is already wrapped by another {type(owner).__name__}; disable it first"
                )
        self.tracker.reset()
        for policy in self.policies:
            policy.start()
        try:
            self._patches.append(ForwardPatch(self.model, self._wrap_denoiser, self.owner))
            for i, b in enumerate(self.branches):
                self._patches.append(ForwardPatch(b.module, self._branch_wrapper(i, b.module), self.owner))
            if self._block_policies:
                self._wrap_blocks()
        except Exception:
            restore_all(self._patches)
            raise
        return self

    def _wrap_blocks(self) -> None:
        wrapped = {id(p.module) for p in self._patches}
        for j, group in enumerate(self.blocks):
            if id(group.module) not in wrapped:
                self._patches.append(ForwardPatch(group.module, self._block_wrapper(j, group.module), self.owner))

    def disable(self, *, interrupted: bool = False) -> None:
        """End the running generation (dropped if ``interrupted``) and restore the model exactly."""
        if not self._patches:
            return
        try:
            if interrupted:
                self.tracker.reset()
            else:
                self.tracker.finish()
        finally:
            try:
                for policy in self.policies:
                    policy.stop(interrupted)
            finally:
                try:
                    restore_all(self._patches)
                except Exception:
                    self.tracker.detached = True  # wrappers left in place pass calls straight through
                    raise

    def reset(self) -> None:
        """End the current generation: the next denoiser call is step 0 of a new one."""
        self.tracker.finish()

    def __enter__(self) -> "BranchHooks":
        self.enable()
        self._with_depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._with_depth -= 1
        if self._with_depth > 0:  # an inner block of a nested `with`: the outer one still runs
            if exc_type is not None:
                self.tracker.reset()
            return
        self.disable(interrupted=exc_type is not None)

    def _generation_ended(self, steps: int, timesteps: list) -> None:
        for policy in self.policies:
            policy.end_generation(steps, timesteps)
        if self.on_generation_end is not None:
            self.on_generation_end(steps, timesteps)

    # ---------------------------------------------------------------- wrappers
    def _wrap_denoiser(self, original: Callable) -> Callable:
        tracker = self.tracker

        def forward(*args, **kwargs):
            if tracker.detached:
                return original(*args, **kwargs)
            if tracker.depth > 0:  # a nested call (facebookresearch/DiT's forward_with_cfg -> forward)
                return original(*args, **kwargs)
            tracker.advance(find_timestep(args, kwargs))
            self._occurrences = [0] * len(self.branches)
            self._block_occurrences = [0] * len(self.blocks)
            tracker.depth += 1
            try:
                with contextlib.ExitStack() as stack:
                    for policy in self.policies:
                        context = policy.begin_call()
                        if context is not None:
                            stack.enter_context(context)
                    return original(*args, **kwargs)
            finally:
                tracker.depth -= 1

        return forward

    def _branch_wrapper(self, index: int, module: nn.Module) -> Callable[[Callable], Callable]:
        tracker = self.tracker

        def make(original: Callable) -> Callable:
            def forward(*args, **kwargs):
                fn = compiled_forward(module, original)
                if tracker.depth == 0 or tracker.detached:  # outside a denoiser call: nothing to follow
                    return fn(*args, **kwargs)
                occurrence = self._occurrences[index]
                self._occurrences[index] = occurrence + 1
                return self._dispatch(index, (tracker.call, occurrence), fn, args, kwargs)

            return forward

        return make

    def _block_wrapper(self, index: int, module: nn.Module) -> Callable[[Callable], Callable]:
        tracker = self.tracker

        def make(original: Callable) -> Callable:
            def forward(*args, **kwargs):
                fn = compiled_forward(module, original)
                policies = self._block_policies
                if tracker.depth == 0 or tracker.detached or not policies:
                    return fn(*args, **kwargs)
                occurrence = self._block_occurrences[index]
                self._block_occurrences[index] = occurrence + 1
                return self._chained(index, (tracker.call, occurrence), fn, args, kwargs, 0, "block", policies)

            return forward

        return make
