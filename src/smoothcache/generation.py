"""What a cache did in its last generation: steps run, calls computed and predicted, how the generation ended,
and, when nothing was skipped, why.

A cache that skips nothing looks like a cache that works until someone times it; :func:`idle_reason` names
the cause so the cache can say it once (a schedule of all ones, a run shorter than the schedule's first skip,
a denoiser without a readable timestep, calls that had to compute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["ENDINGS", "GenerationReport", "conditions_mismatch", "idle_reason"]

#: How a generation can end, as :attr:`GenerationReport.ended` names it.
ENDINGS = {
    "returned": "returned through its pipeline",
    "next generation": "ended when the next one started",
    "reset": "ended by reset()",
    "disabled": "ended when the cache was disabled",
    "not returned": "did not return through its pipeline before the next generation started (it stopped "
    "early, or two generations ran interleaved on one model): not counted",
    "interrupted": "stopped by an error or an interrupt: not counted",
}


@dataclass(frozen=True)
class GenerationReport:
    """One generation of a cache: ``steps`` run of the schedule's ``num_steps``, branch calls ``computed`` and
    ``predicted``, how it ``ended`` (a key of :data:`ENDINGS`) and, if nothing was predicted, ``reason``."""

    steps: int
    num_steps: int
    computed: int
    predicted: int
    ended: str
    reason: str = ""

    @property
    def counted(self) -> bool:
        """Whether the generation ran to its end as one (not dropped after an error or an interleaving)."""
        return self.ended not in ("not returned", "interrupted")

    @property
    def stopped_early(self) -> bool:
        """It ended before the schedule's last step."""
        return self.steps < self.num_steps

    def __str__(self) -> str:
        total = self.computed + self.predicted
        share = f" ({self.predicted / total:.0%})" if total else ""
        steps = (
            f"stopped early after {self.steps} of {self.num_steps} steps"
            if self.stopped_early
            else f"{self.steps} steps"
        )
        text = f"{steps}, {self.computed} calls computed, {self.predicted} skipped{share}"
        if self.ended != "returned":
            text += f"; {ENDINGS.get(self.ended, self.ended)}"
        if self.reason:
            text += f"; nothing skipped: {self.reason}"
        return text

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "num_steps": self.num_steps,
            "computed": self.computed,
            "predicted": self.predicted,
            "ended": self.ended,
            "reason": self.reason,
        }


def idle_reason(
    rows: Sequence[Sequence[int] | None], steps: int, num_steps: int, timesteps: Sequence, computed: int
) -> str:
    """Why a generation of ``steps`` steps under ``rows`` (a ``num_steps``-step schedule) skipped nothing."""
    zeros = [s for row in rows if row is not None for s, v in enumerate(row) if v == 0]
    if not zeros:
        return "the schedule computes every step (it has no 0 entry); plan one for a budget to skip calls"
    first = min(zeros)
    if steps <= first:
        return (
            f"the generation ran {steps} step(s), and the {num_steps}-step schedule's first skip is at step "
            f"{first}: use a schedule made for {steps} steps (Schedule.for_budget(..., num_steps={steps}))"
        )
    if timesteps and all(t is None for t in timesteps):
        return (
            "the denoiser never received a timestep smoothcache could read, so steps could not be followed; "
            "pass calls_per_step="
        )
    if computed == 0:
        return "no wrapped branch was called during the generation"
    return (
        "every call of a 0 step had to compute (the input shapes changed between steps, or the calls wrote a "
        "key-value cache)"
    )


def conditions_mismatch(calibrated: dict[str, float], running: dict) -> str:
    """A sentence naming the pipeline arguments that differ from the calibration's, or ``""``."""
    differ = [
        f"{name}={running[name]:g} (calibrated at {value:g})"
        for name, value in calibrated.items()
        if name in running and float(running[name]) != value
    ]
    if not differ:
        return ""
    return (
        f"the pipeline runs with {', '.join(differ)}: the branch errors, and so the quality of this "
        "schedule, depend on it; calibrate with the arguments you generate with"
    )
