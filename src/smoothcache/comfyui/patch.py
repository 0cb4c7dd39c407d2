"""Putting SmoothCache on a ComfyUI model through its documented extension points only.

:func:`patch_model` clones the MODEL (the input patcher and the shared model are never changed) and gives the
clone:

- a block replacement for every hooked block (``set_model_patch_replace(..., "dit", kind, i)``): a
  :class:`BlockPatch`, which hands the call to the running :class:`~smoothcache.comfyui.session.SamplingRun`
  (or runs the block as it is outside one);
- an ``OUTER_SAMPLE`` wrapper, around each sampler run: it makes the run's state, puts it into a copy of
  the guider's ``model_options`` for the run, and in ``finally`` (also on an error or an interrupt) puts the
  options back and drops the state;
- an ``APPLY_MODEL`` wrapper, around each model call: the step, slot and ControlNet of the call.

``model_options["transformer_options"]["smoothcache"]`` holds the node's :class:`SmoothCacheSetup` (no
tensors; every later ``clone()`` shares it) and, in a run's own copy, the run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..calibration import CalibratorPolicy
from ..errors import ProfileError
from .families import ModelBlocks
from .plans import PlanSource
from .session import SamplingRun

__all__ = [
    "KEY",
    "BlockPatch",
    "SmoothCacheSetup",
    "apply_model_wrapper",
    "outer_sample_wrapper",
    "patch_model",
]

logger = logging.getLogger(__name__)

#: the key of SmoothCache's wrappers and of its entry in ``transformer_options``
KEY = "smoothcache"


def _tell_ui(node_id: str | None, text: str) -> None:
    """Show ``text`` on the node in ComfyUI's interface, when a ComfyUI server is running."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if node_id is not None and instance is not None:
        try:
            instance.send_progress_text(text, node_id)
        except Exception:  # the interface is informational; never fail a run over it
            logger.debug("could not send progress text to node %s", node_id, exc_info=True)


class SmoothCacheSetup:
    """What a SmoothCache node asks of every sampler run of its model.

    Args:
        blocks: the model's hooked blocks.
        source: cache on the schedules it gives (SmoothCache Apply); with ``source.path`` None and no profile
            yet, the first run calibrates and the next ones cache (the one-line mode).
        profile_path: calibrate each run and write the profile here (SmoothCache Calibrate).
        lookahead: K of the calibrations this setup makes.
        node_id: the node's id, to show messages on it.
    """

    def __init__(
        self,
        blocks: ModelBlocks,
        *,
        source: PlanSource | None = None,
        profile_path: Path | None = None,
        lookahead: int = 3,
        node_id: str | None = None,
    ):
        if (source is None) == (profile_path is None):
            raise ValueError("give a plan source (to cache) or a profile path (to calibrate)")
        self.blocks = blocks
        self.source = source
        self.profile_path = profile_path
        self.lookahead = lookahead
        self.node_id = node_id
        self._recorder: tuple[tuple, CalibratorPolicy] | None = None
        #: numbers about the last run that ended (None before any): see :meth:`SamplingRun.summary`
        self.last_run: dict[str, Any] | None = None
        self.runs = 0

    def __deepcopy__(self, memo) -> "SmoothCacheSetup":
        return self  # ModelPatcher.clone() deep-copies model_options: clones share the setup

    def _recorder_for(self, sigmas: list[float]) -> CalibratorPolicy:
        """The calibration of runs over these sigmas: consecutive runs over the same sigmas add up."""
        key = tuple(round(s, 6) for s in sigmas)
        if self._recorder is None or self._recorder[0] != key:
            self._recorder = (key, CalibratorPolicy(self.lookahead, model_name=self.blocks.model))
        return self._recorder[1]

    def start_run(self, diffusion_model: nn.Module, sigmas: list[float]) -> SamplingRun | None:
        """The state of a sampler run over ``sigmas``, or None when it needs none (it computes everything)."""
        if len(sigmas) < 3:
            logger.info(
                "SmoothCache: a %d-step run has nothing to calibrate or skip", max(len(sigmas) - 1, 0)
            )
            return None
        calibrating = self.profile_path is not None
        if not calibrating and not self.source.refresh():
            if self.source.path is not None:
                raise ProfileError(
                    f"no SmoothCache profile or schedule at {self.source.path}: run a workflow with the "
                    "SmoothCache Calibrate node writing it first, or correct the path"
                )
            calibrating = True  # one-line mode, first run
            logger.info("SmoothCache: this run calibrates (every block computed); the next ones cache")
        if calibrating:
            return SamplingRun(self.blocks, diffusion_model, sigmas, recorder=self._recorder_for(sigmas))
        schedule = self.source.schedule_for(sigmas)
        return (
            None if schedule is None else SamplingRun(self.blocks, diffusion_model, sigmas, schedule=schedule)
        )

    def end_run(self, run: SamplingRun, completed: bool) -> None:
        """The run ended (``completed``: its sampler returned): save what it calibrated, drop its state."""
        try:
            if completed:
                run.finish()
                if run.block_calls == 0:
                    logger.warning(
                        "SmoothCache: %s ran no block through SmoothCache's hooks; nothing was recorded or "
                        "skipped (this model variant is not supported)",
                        self.blocks.model,
                    )
                elif run.recorder is not None:
                    self._calibrated(run.recorder)
        finally:
            self.last_run = run.summary()
            self.runs += 1
            run.release(interrupted=not completed)
        if completed and run.skipper is not None and run.block_calls:
            s = self.last_run
            logger.info(
                "SmoothCache: skipped %d of %d block calls over %d steps",
                s["skipped"],
                s["block_calls"],
                s["steps"],
            )

    def _calibrated(self, recorder: CalibratorPolicy) -> None:
        profile = recorder.profile
        if self.profile_path is None:
            self.source.use(profile)
            logger.info("SmoothCache: calibrated on this run; the next runs cache")
            return
        path = profile.save(self.profile_path)
        text = (
            f"SmoothCache wrote the calibration profile {path} ({profile.runs} run(s), "
            f"{profile.num_steps} steps)"
        )
        logger.info(text)
        _tell_ui(self.node_id, text)


class BlockPatch:
    """The replacement of one block (``patches_replace["dit"][(kind, index)]``): the running sampler's
    SmoothCache state decides what the call does; outside a run the block runs as it is."""

    def __init__(self, kind: str, index: int):
        self.kind = kind
        self.index = index

    def __call__(self, args: dict, extra_options: dict) -> dict:
        original = extra_options["original_block"]
        run = (args.get("transformer_options") or {}).get(KEY)
        if not isinstance(run, SamplingRun):
            return original(args)
        return run.block(self.kind, self.index, args, original)


def outer_sample_wrapper(executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
    """``OUTER_SAMPLE``: one sampler run's SmoothCache state, made here and always released here."""
    guider = executor.class_obj
    options = guider.model_options
    setup = options.get("transformer_options", {}).get(KEY)
    if not isinstance(setup, SmoothCacheSetup):
        return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
    diffusion_model = guider.model_patcher.get_model_object("diffusion_model")
    run = setup.start_run(diffusion_model, [float(s) for s in sigmas.reshape(-1)])
    if run is None:
        return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
    run_options = dict(options)
    run_options["transformer_options"] = {**options["transformer_options"], KEY: run}
    guider.model_options = run_options
    completed = False
    try:
        out = executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
        completed = True
    finally:
        guider.model_options = options
        setup.end_run(run, completed)
    return out


def apply_model_wrapper(
    executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kw
):
    """``APPLY_MODEL``: tells the running sampler's state which step, slot and ControlNet this call has."""
    transformer_options = {} if transformer_options is None else transformer_options
    run = transformer_options.get(KEY)
    if not isinstance(run, SamplingRun):
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
    with run.model_call(transformer_options.get("sigmas", t), transformer_options, control):
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)


def patch_model(model: Any, setup: SmoothCacheSetup) -> Any:
    """A clone of the ComfyUI ``model`` (a ModelPatcher) that runs ``setup`` in every sampler run; the input
    model is not changed. A SmoothCache node applied before is replaced."""
    from comfy.patcher_extension import WrappersMP

    patched = model.clone()
    for kind in (WrappersMP.OUTER_SAMPLE, WrappersMP.APPLY_MODEL):
        patched.remove_wrappers_with_key(kind, KEY)
    patched.model_options.setdefault("transformer_options", {})[KEY] = setup
    patched.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    patched.add_wrapper_with_key(WrappersMP.APPLY_MODEL, KEY, apply_model_wrapper)
    for kind, index, _ in setup.blocks.blocks():
        patched.set_model_patch_replace(BlockPatch(kind, index), "dit", kind, index)
    return patched
