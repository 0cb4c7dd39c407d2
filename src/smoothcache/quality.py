"""Quality targets for the one-line mode: ``SmoothCache(model, min_psnr=35)`` picks the fastest budget whose
cached output stays that close to the uncached one, measured on the calibration generation itself.

When the calibrating generation returns, :class:`QualityCheck` runs the same generation again through its
pipeline (the same call, the generator re-seeded with its initial seed), once uncached for the reference and
once cached per budget it tries, and compares them with :func:`smoothcache.fidelity.measure`. Budgets are
tried fastest first along a ladder and bisected, so about three cached generations decide; each is logged.
A replay whose first denoiser input differs from the calibration's (a generator used before the call, noise
passed as ``latents=``) would compare different images: the check then stops and says so.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .errors import ScheduleError, warn
from .fidelity import MEASURES, as_output, measure
from .validate import check_number

__all__ = ["QualityCheck", "QualityTarget", "ladder"]

logger = logging.getLogger(__name__)

#: The targets the one-line mode takes: keyword -> (figure, a lower bound?).
BOUNDS = {"min_psnr": ("psnr_db", True), "min_ssim": ("ssim", True), "max_lsd": ("lsd_db", False)}


@dataclass(frozen=True)
class QualityTarget:
    """A bound on one fidelity figure of the cached output against the uncached one."""

    keyword: str
    bound: float

    @classmethod
    def of(cls, **given: float | None) -> "QualityTarget | None":
        """The target among ``min_psnr`` / ``min_ssim`` / ``max_lsd`` (at most one given), checked."""
        chosen = {k: v for k, v in given.items() if v is not None}
        if len(chosen) > 1:
            raise TypeError(f"give one quality target, not {' and '.join(f'{k}=' for k in chosen)}")
        if not chosen:
            return None
        (keyword, bound), = chosen.items()
        bound = check_number(bound, keyword, minimum=-math.inf, error=ScheduleError)
        if keyword == "min_ssim" and not bound <= 1:
            raise ScheduleError(f"min_ssim must be at most 1 (SSIM of identical images), got {bound:g}")
        return cls(keyword, bound)

    @property
    def figure(self) -> str:
        return BOUNDS[self.keyword][0]

    def met(self, value: float) -> bool:
        return value >= self.bound if BOUNDS[self.keyword][1] else value <= self.bound

    def __str__(self) -> str:
        name, unit, _ = MEASURES[self.figure]
        return f"{self.keyword}={self.bound:g}{' ' + unit if unit else ''} ({name})"


@dataclass
class QualityReport:
    """What the check measured: ``tried`` is ``[(speedup, figure value)]`` in the order run."""

    target: QualityTarget
    chosen: float | None = None
    tried: list[tuple[float, float]] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "target": {self.target.keyword: self.target.bound},
            "chosen_speedup": self.chosen,
            "tried": [{"speedup": s, self.target.figure: v} for s, v in self.tried],
            "note": self.note,
        }

    def __str__(self) -> str:
        unit = MEASURES[self.target.figure][1]
        runs = ", ".join(f"{s:.2f}x: {v:.4g}{unit and ' ' + unit}" for s, v in self.tried)
        head = (
            f"chose {self.chosen:.2f}x" if self.chosen is not None else "no budget met it, caching nothing"
        )
        return f"quality target {self.target}: {head} (measured on the calibration generation: {runs})" + (
            f"; {self.note}" if self.note else ""
        )


def ladder(top: float, bottom: float = 1.1, ratio: float = 0.85) -> list[float]:
    """Speed-ups from ``top`` down to about ``bottom``, each ``ratio`` times the one before."""
    values = [top]
    while values[-1] * ratio >= bottom:
        values.append(values[-1] * ratio)
    return values


def _fingerprint(args: tuple, kwargs: dict) -> tuple | None:
    """A cheap summary of the denoiser's noisy input (``hidden_states`` or its first argument)."""
    x = kwargs.get("hidden_states", args[0] if args else None)
    if not isinstance(x, torch.Tensor):
        return None
    x = x.detach().double()
    return tuple(x.shape), float(x.sum()), float(x.abs().sum())


class QualityCheck:
    """Replays the calibration generation and measures each budget against its uncached output.

    Args:
        target: the bound to meet.
        hooks: the mechanism the one-line mode runs in (its ``inputs`` hold the calibration's call).
    """

    def __init__(self, target: QualityTarget, hooks: Any):
        self.target = target
        self.hooks = hooks
        self.report = QualityReport(target)

    def _replay_call(self) -> tuple[Any, dict]:
        """The pipeline and the keyword arguments that run the calibration generation again."""
        inputs = self.hooks.inputs
        pipe, call = inputs.get("pipeline"), dict(inputs.get("call", {}))
        if pipe is None or self.hooks.end_reason != "returned":
            raise LookupError("no diffusers pipeline ran the calibration generation to its return")
        defaults = {
            name: p.default for name, p in inspect.signature(type(pipe).__call__).parameters.items()
        }
        for name, value in list(call.items()):
            computed = isinstance(value, torch.Tensor) or (
                isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor)
            )
            if computed and defaults.get(name, 0) is None:  # filled in by the pipeline (latents, embeddings)
                del call[name]
        generator = call.get("generator")
        seeded = generator if isinstance(generator, (list, tuple)) and generator else [generator]
        if not all(isinstance(g, torch.Generator) for g in seeded):
            raise LookupError(
                "the calibration generation had no seeded generator to run it again with; pass "
                "generator=torch.Generator().manual_seed(n)"
            )
        call.pop("callback_on_step_end", None)
        call.pop("callback", None)
        return pipe, call

    def _unchecked(self, err: Exception, plan: Callable[[float], Any], top: float) -> Any:
        warn(f"the quality target {self.target} cannot be checked: {err}; caching with the plan for "
             f"{top:.2f}x, unchecked")
        self.report.note, self.report.chosen = f"not checked: {err}", top
        return plan(top)

    def choose(
        self, plan: Callable[[float], Any], top: float, install: Callable[[Any], None]
    ) -> Any | None:
        """The schedule of the fastest budget on the ladder from ``top`` that meets the target (None if none
        does). ``plan(speedup)`` makes a schedule; ``install(schedule)`` makes the model run it (None:
        uncached)."""
        expected = _fingerprint(self.hooks.inputs.get("args", ()), self.hooks.inputs.get("kwargs", {}))
        try:
            pipe, call = self._replay_call()
        except LookupError as err:
            return self._unchecked(err, plan, top)

        def generate(schedule: Any) -> Any:
            install(schedule)
            with warnings.catch_warnings():  # a parameter the pipeline turned into a tensor, passed back
                warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
                out = pipe(**{**call, "generator": _reseeded(call["generator"])})
            seen = self.hooks.inputs
            if _fingerprint(seen.get("args", ()), seen.get("kwargs", {})) != expected:
                raise LookupError(
                    "running the calibration generation again gave another starting noise (a generator used "
                    "before the call, or noise passed in); pass a freshly seeded generator"
                )
            return out

        candidates = ladder(top)
        logger.info(
            "quality check (%s): running the calibration generation again, uncached, then cached at budgets "
            "bisected among %s", self.target, ", ".join(f"{s:.2f}x" for s in candidates),
        )
        try:
            reference = generate(None)
            as_output(reference)  # images, video or audio: else a TypeError naming what it returned
            lo, hi, best = 0, len(candidates) - 1, None
            while lo <= hi:  # fastest first: the first meeting the target bounds the search
                mid = (lo + hi) // 2
                schedule = plan(candidates[mid])
                value = float(measure(reference, generate(schedule))[self.target.figure])
                self.report.tried.append((candidates[mid], value))
                logger.info("quality check: %.2fx gives %s %.4g", candidates[mid], self.target.figure, value)
                if self.target.met(value):
                    best, hi = (candidates[mid], schedule), mid - 1
                else:
                    lo = mid + 1
        except (LookupError, TypeError) as err:
            return self._unchecked(err, plan, top)
        finally:
            self.hooks.inputs = {}
            install(None)
        if best is None:
            warn(f"no budget from {candidates[0]:.2f}x down to {candidates[-1]:.2f}x met {self.target} on "
                 "the calibration generation: the cache computes every step; lower the target")
            return None
        self.report.chosen = best[0]
        logger.info("%s", self.report)
        return best[1]


def _reseeded(generator: Any) -> Any:
    """A new generator (or list of them) at the initial seed of each given one."""
    if isinstance(generator, (list, tuple)):
        return [_reseeded(g) for g in generator]
    return torch.Generator(generator.device).manual_seed(generator.initial_seed())
