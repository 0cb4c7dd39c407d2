"""What :func:`smoothcache.tune` returns: the table of budgets with their speed-ups and fidelity, the
schedule of each budget, the choice of the fastest budget meeting a fidelity target, and the report it writes.

A budget *meets* a target when the **mean** of the figure over the held-out samples does (the figure the
report shows first); the worst sample's figure is shown beside it in the table, the JSON and the plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import TargetNotMetError
from .fidelity import FIGURES, MEASURES
from .profile import CalibrationProfile
from .schedule import Schedule
from .tuning_report import format_value, markdown_table, plot_pareto, report_dict, speedup_label, write_report
from .validate import check_number

__all__ = ["FIDELITY_TARGETS", "MAIN_FIGURE", "Budget", "TuneResult", "check_target_kind", "check_targets"]

#: Each fidelity target: the figure it bounds and whether it is a lower bound (``min_``) or an upper bound.
FIDELITY_TARGETS = {
    "min_psnr": ("psnr_db", True),
    "min_ssim": ("ssim", True),
    "max_lsd": ("lsd_db", False),
    "min_snr": ("snr_db", True),
    "max_flicker": ("flicker", False),
}

#: The figure the Pareto plot draws for each kind of output.
MAIN_FIGURE = {"image": "psnr_db", "video": "psnr_db", "audio": "lsd_db"}


def check_targets(target: Mapping[str, float | None] | None) -> dict[str, float]:
    """The targets given (None values dropped), each a known name with a finite number."""
    if target is None:
        return {}
    if not isinstance(target, Mapping):
        raise TypeError(f"target must be a dict such as {{'min_psnr': 40}}, got {type(target).__name__}")
    out = {}
    for name, value in target.items():
        if name not in FIDELITY_TARGETS:
            raise ValueError(f"unknown fidelity target {name!r}; choose from {', '.join(FIDELITY_TARGETS)}")
        if value is not None:
            out[name] = check_number(value, name, minimum=-math.inf)
    return out


def check_target_kind(target: Mapping[str, float], kind: str) -> None:
    """Refuse targets on a figure this kind of output is not measured by (PSNR of audio...)."""
    bad = [name for name in target if FIDELITY_TARGETS[name][0] not in FIGURES[kind]]
    if bad:
        usable = [name for name, (figure, _) in FIDELITY_TARGETS.items() if figure in FIGURES[kind]]
        raise ValueError(
            f"the pipeline outputs {kind}, which tune measures by {', '.join(FIGURES[kind])}: "
            f"{', '.join(bad)} does not apply; use {', '.join(usable)}"
        )


def _describe(target: Mapping[str, float]) -> str:
    parts = []
    for name, value in target.items():
        figure, lower_bound = FIDELITY_TARGETS[name]
        parts.append(f"{MEASURES[figure][0]} {'>=' if lower_bound else '<='} {format_value(figure, value)}")
    return " and ".join(parts)


@dataclass(frozen=True)
class Budget:
    """A budget of a tune run: its speed-up, its schedule and its table row."""

    speedup: float
    schedule: Schedule
    row: dict[str, Any]

    def __repr__(self) -> str:
        return f"Budget({speedup_label(self.speedup)}, measured {self.row['measured_speedup']:.2f}x)"


@dataclass
class TuneResult:
    """The result of :func:`smoothcache.tune`.

    Attributes:
        kind: ``"image"``, ``"video"`` or ``"audio"``.
        table: one row (a flat dict) per budget, slowest first: ``speedup`` (the budget planned for),
            ``planned_speedup_time`` (from the calibration's timings, None without), ``planned_speedup_macs``,
            ``measured_speedup`` (median over the held-out inputs of the uncached over the cached time of the
            same input), ``seconds`` (median cached generation), and for each figure ``<figure>`` (mean over
            the held-out samples), ``<figure>_worst`` (the worst sample) and ``<figure>_std`` (the standard
            deviation over the samples).
        schedules: the schedule of each budget, by speed-up.
        target: the fidelity target given to :func:`~smoothcache.tune`, if any (``{"min_psnr": 40.0}``).
        profile: the calibration.
        info: how the run was made (inputs and seeds, steps, reachable speed-up, timings...).
        samples: the first held-out input's outputs, ``"uncached"`` and per budget label (for the report).
    """

    kind: str
    table: list[dict[str, Any]]
    schedules: dict[float, Schedule]
    profile: CalibrationProfile
    target: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def figures(self) -> tuple[str, ...]:
        """The fidelity figures measured (keys of :data:`smoothcache.fidelity.MEASURES`)."""
        return FIGURES[self.kind]

    @property
    def main_figure(self) -> str:
        """The figure the Pareto plot draws: PSNR for images and video, log-spectral distance for audio."""
        return MAIN_FIGURE[self.kind]

    def best(self, min_psnr: float | None = None, min_ssim: float | None = None,
             max_lsd: float | None = None, min_snr: float | None = None,
             max_flicker: float | None = None) -> Budget:
        """The fastest budget whose held-out **mean** meets every target given: the largest speed-up planned
        for (measured speed-ups follow it, but with the noise of a few timed generations).

        Without arguments, the run's own :attr:`target`. Raises :class:`~smoothcache.errors.TargetNotMetError`
        naming the best value reached when no budget meets it, ``ValueError`` for a figure this kind of
        output is not measured by or for no target at all.
        """
        given = {"min_psnr": min_psnr, "min_ssim": min_ssim, "max_lsd": max_lsd, "min_snr": min_snr,
                 "max_flicker": max_flicker}
        target = check_targets(given) or dict(self.target)
        if not target:
            raise ValueError("give a fidelity target, e.g. best(min_psnr=40)")
        check_target_kind(target, self.kind)

        passing = [row for row in self.table if self.meets(row, target)]
        if passing:
            row = max(passing, key=lambda r: r["speedup"])
            return Budget(row["speedup"], self.schedules[row["speedup"]], row)
        reached, parts = {}, []
        for name in target:
            figure, lower_bound = FIDELITY_TARGETS[name]
            pick = max if lower_bound else min
            row = pick(self.table, key=lambda r: r[figure])
            reached[name] = (row[figure], row["speedup"])
            parts.append(f"{format_value(figure, row[figure])} at {speedup_label(row['speedup'])}")
        raise TargetNotMetError(
            f"no budget meets {_describe(target)} on the held-out inputs (mean over "
            f"{self.info.get('held_out_samples', '?')} samples); the best reached is {' and '.join(parts)}: "
            "ask for smaller speed-ups (--speedups / speedups=) or a looser target",
            reached,
        )

    def meets(self, row: Mapping[str, Any], target: Mapping[str, float] | None = None) -> bool:
        """Whether a table row's held-out mean meets every target (default: the run's :attr:`target`)."""
        for name, bound in (self.target if target is None else target).items():
            figure, lower_bound = FIDELITY_TARGETS[name]
            value = row[figure]
            if value is None or math.isnan(value) or (value < bound if lower_bound else value > bound):
                return False
        return True

    @property
    def target_bounds(self) -> dict[str, float]:
        """The run's target as bounds per figure: ``{"psnr_db": 40.0}``."""
        return {FIDELITY_TARGETS[name][0]: bound for name, bound in self.target.items()}

    @property
    def chosen(self) -> Budget | None:
        """:meth:`best` for the run's :attr:`target`; None without a target or when none meets it."""
        if not self.target:
            return None
        try:
            return self.best()
        except TargetNotMetError:
            return None

    def plot(self, path: str | Path) -> Path:
        """Write the Pareto plot (measured speed-up against the main figure, mean and worst) as a PNG."""
        return plot_pareto(self, path)

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the report folder (``report.md``, ``report.json``, ``pareto.png``, samples, each budget's
        schedule, the chosen ``schedule.json``); all or nothing. An existing folder is refused unless
        ``overwrite``."""
        return write_report(self, folder, overwrite=overwrite)

    def to_dict(self) -> dict[str, Any]:
        """The numbers of the run, as ``report.json`` holds them (infinite values as None)."""
        return report_dict(self)

    def markdown(self) -> str:
        """The report's table (Markdown), as ``report.md`` shows it."""
        return markdown_table(self)

    def __repr__(self) -> str:
        main, rows = self.main_figure, self.table
        labels = [speedup_label(r["speedup"]) for r in rows]
        span = f"{labels[0]}..{labels[-1]}" if labels else "none"
        figures = ", ".join(format_value(main, r[main]) for r in rows)
        measured = ", ".join(f"{r['measured_speedup']:.2f}x" for r in rows)
        chosen = self.chosen
        tail = f"; chosen {speedup_label(chosen.speedup)} for {_describe(self.target)}" if chosen else ""
        if self.target and chosen is None:
            tail = f"; no budget meets {_describe(self.target)}"
        return (
            f"TuneResult({self.kind}, {len(rows)} budgets {span}, measured {measured}; "
            f"{MEASURES[main][0]} {figures}{tail})"
        )
