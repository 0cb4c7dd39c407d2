"""One ComfyUI sampler run as smoothcache sees it: its steps, its block calls, what it records and skips.

A :class:`SamplingRun` is made when a sampler starts (ComfyUI's ``OUTER_SAMPLE`` wrapper) and dropped when
it ends, also on an error or an interrupt. It is the mechanism side of smoothcache's policies for ComfyUI:
where the diffusers side wraps module ``forward``\\ s (:class:`~smoothcache.hooks.BranchHooks`), here ComfyUI
calls the run at each model call (``APPLY_MODEL`` wrapper: :meth:`model_call`) and at each block (the block
replacement: :meth:`block`). Calibration is smoothcache's own
:class:`~smoothcache.calibration.CalibratorPolicy`, run with each block as one branch whose output is the
block's residual; caching is a :class:`~smoothcache.comfyui.runs.BlockSkipper`. Like ``BranchHooks``, the run
offers the policy ``step``, ``time``, ``branches``, ``blocks``, ``model``, ``end_reason`` and ``arguments``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch.nn as nn

from ..calibration import CalibratorPolicy
from ..errors import CalibrationError
from ..hooks import HookedBlock
from ..schedule import Schedule
from .clock import Call, SigmaClock, call_sigma, conditioning_of
from .families import ModelBlocks
from .runs import BlockSkipper
from .streams import Layout, learn_layout, sampled, snapshot

__all__ = ["SamplingRun", "adds_between_blocks"]


def adds_between_blocks(transformer_options: Mapping[str, Any], control: Any) -> bool:
    """True if the model changes the hidden state between blocks in this call (ControlNet, block patches)."""
    patches = transformer_options.get("patches") or {}
    return control is not None or any(k in ("double_block", "single_block") for k in patches)


class SamplingRun:
    """The state of one sampler run (see the module docstring).

    Args:
        blocks: the model's hooked blocks.
        diffusion_model: the model holding them.
        sigmas: the sigmas this sampler call runs.
        schedule: skip on its 0 steps (rows of ``len(sigmas) - 1`` steps), or None to compute every block.
        recorder: record every block's errors into this calibration policy, or None.
    """

    def __init__(
        self,
        blocks: ModelBlocks,
        diffusion_model: nn.Module,
        sigmas: Sequence[float],
        *,
        schedule: Schedule | None = None,
        recorder: CalibratorPolicy | None = None,
    ):
        self.model = diffusion_model
        self.clock = SigmaClock(sigmas)
        self.branches = blocks.branches(diffusion_model)
        self.blocks = [HookedBlock(b.path, b.module, (i,)) for i, b in enumerate(self.branches)]
        self.positions = {(b.key, b.block): i for i, b in enumerate(self.branches)}
        self.layouts: dict[tuple[str, int], Layout] = {}
        self.skipper = None if schedule is None else BlockSkipper(blocks, schedule, self.layouts)
        self.recorder = recorder
        self.step, self.time, self.end_reason = -1, 0.0, ""
        self.arguments: dict = {}  # no diffusers pipeline call to read conditions (guidance) from
        self.current: Call | None = None
        self.model_calls = 0
        self.block_calls = 0
        if recorder is not None:
            recorder.attach(self)
            recorder.start()

    @property
    def num_steps(self) -> int:
        return self.clock.num_steps

    @contextlib.contextmanager
    def model_call(
        self, sigma: Any, transformer_options: Mapping[str, Any], control: Any = None
    ) -> Iterator[Call]:
        """Hold around one model call: works out its step and slot."""
        call = self.clock.call(
            call_sigma(sigma),
            conditioning_of(transformer_options),
            adds_between_blocks(transformer_options, control),
        )
        self.current, self.step, self.time = call, call.step, call.time
        self.model_calls += 1
        timing = self.recorder.begin_call() if self.recorder is not None else None
        try:
            with timing if timing is not None else contextlib.nullcontext():
                yield call
        finally:
            self.current = None

    def block(self, kind: str, index: int, args: Mapping[str, Any], original: Callable) -> Any:
        """Block ``index`` of ``kind`` is called with ``args``; ``original(args)`` runs it."""
        call = self.current
        if call is None or (kind, index) not in self.positions:
            return original(args)
        self.block_calls += 1
        if self.recorder is not None:
            return self._record(kind, index, args, original, call)
        if self.skipper is not None:
            return self.skipper.call(kind, index, args, original, call)
        return original(args)

    def _record(self, kind: str, index: int, args: Mapping[str, Any], original: Callable, call: Call) -> Any:
        position = self.positions[(kind, index)]
        start = snapshot(args, self.layouts.get((kind, index)))
        result: dict[str, Any] = {}

        def residual():
            out = result["out"] = original(args)
            layout = self.layouts.get((kind, index)) or learn_layout(args, out)
            if isinstance(layout, str):
                raise CalibrationError(
                    f"cannot calibrate {self.branches[position].path}: {layout}; this model's blocks do not "
                    "return their input streams, so SmoothCache does not support it"
                )
            self.layouts[(kind, index)] = layout
            return tuple(sampled(out[s] - start[s]) for s in layout.streams)

        def timed_block():
            return self.recorder.on_branch(position, call.slot, residual, (), {})

        self.recorder.on_block(position, call.slot, timed_block, (), {})
        return result["out"]

    def finish(self) -> None:
        """The sampler returned: fold the recorded errors into the recorder's profile."""
        self.end_reason = "returned"
        if self.recorder is not None:
            self.recorder.end_generation(self.num_steps, self.clock.sigmas[: self.num_steps])

    def release(self, interrupted: bool = False) -> None:
        """Drop every tensor the run holds (an interrupted run's recordings are dropped too)."""
        if self.recorder is not None:
            self.recorder.stop(interrupted)
        if self.skipper is not None:
            self.skipper.release()
        self.layouts.clear()
        self.current = None

    def summary(self) -> dict[str, Any]:
        """Plain numbers about the run (no tensors): steps, calls, and blocks computed/skipped per step."""
        counts = {} if self.skipper is None else {s: tuple(c) for s, c in sorted(self.skipper.counts.items())}
        return {
            "steps": self.num_steps,
            "model_calls": self.model_calls,
            "block_calls": self.block_calls,
            "computed": sum(c[0] for c in counts.values()) if counts else self.block_calls,
            "skipped": sum(c[1] for c in counts.values()),
            "by_step": counts,
            "peak_bytes": 0 if self.skipper is None else self.skipper.store.peak_bytes,
        }
