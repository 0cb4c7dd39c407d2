"""Planning: from a calibration profile to schedule rows (0/1 compute lists), through one entry point,
:func:`plan`.

- ``planner="greedy"`` (:mod:`.greedy`): the original implementation's scan at a threshold ``alpha``, or at
  the smallest alpha that meets a budget. Rows are per branch key (errors averaged over blocks, as in the
  paper) or per block (``per_block``).
- ``planner="optimal"`` (the recommended mode): *whole-step* rows, every branch key (of the model, or of one
  block with ``per_block``) computing on the same steps, because skipping all branches of a step together
  costs much less output error than skipping them on different steps at the same compute (see BENCHMARKS.md).
  The steps are chosen by exact dynamic programming (:mod:`.frontier`), with the budget split across blocks by
  :mod:`.split`. The objective sums, over the skip runs, the square of the run's summed error (the branches'
  mean calibrated error): the steps of one run are predicted from the same sources, so their errors add up
  coherently, while different runs are treated as independent. A linear forecast is never allowed to reach as
  far past its newest source as its two sources are apart (a skip run is never longer than the run before it):
  extrapolating further amplifies the error the skipped steps have already put into the trajectory, which the
  calibration (made on the uncached trajectory) cannot see.

A budget is a share of the uncached compute (``compute_fraction``) or its inverse (``speedup``), measured with
the profile's MAC counts (:class:`~smoothcache.costs.MacReport`), or in branch calls for a profile without
them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..costs import COSTS, MacReport
from ..errors import BudgetError, ScheduleError, warn
from ..predictors import PREDICTORS
from ..profile import CalibrationProfile
from ..validate import check_alpha, check_choice, check_fraction, check_int, check_number
from .frontier import RowErrors, frontier
from .greedy import budget_alpha, scan, scan_linear
from .split import least_cost, split_budget

__all__ = ["PLANNERS", "RUN_POWER", "Plan", "budget_fraction", "plan", "threshold_rows"]

logger = logging.getLogger(__name__)

#: How :func:`plan` chooses rows.
PLANNERS = ("greedy", "optimal")
#: The optimal planner's cost of a skip run: (sum of its steps' errors) ** RUN_POWER.
RUN_POWER = 2.0
#: A budget out of reach by at most this share plans the nearest reachable one (with a warning).
NEAREST = 0.02

Rows = dict[str, list[int]]


@dataclass(frozen=True)
class Plan:
    """Planned rows by schedule key, the predictor serving their 0 steps, and how they were planned."""

    rows: Rows
    predictor: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: per schedule key, the predictor of each step (None where it computes), when the plan chose per run
    choices: dict[str, tuple[str | None, ...]] | None = None


def budget_fraction(compute_fraction: float | None = None, speedup: float | None = None) -> float:
    """The share of the uncached compute a budget keeps: ``compute_fraction`` in (0, 1], or ``1 / speedup``
    for a speed-up >= 1. Exactly one must be given (ScheduleError otherwise)."""
    if (compute_fraction is None) == (speedup is None):
        raise ScheduleError("give exactly one of compute_fraction or speedup")
    if speedup is not None:
        return 1.0 / check_number(speedup, "speedup", minimum=1.0, error=ScheduleError)
    return check_fraction(compute_fraction, "compute_fraction", error=ScheduleError)


def _prepare(
    profile: CalibrationProfile | str, lookahead: int | None, num_steps: int | None, predictor: str
) -> tuple[CalibrationProfile, int]:
    profile = CalibrationProfile.coerce(profile)
    check_choice(predictor, "predictor", PREDICTORS + ("auto",), error=ScheduleError)
    if predictor != "auto" and predictor not in profile.predictors:
        raise ScheduleError(
            f"the {predictor!r} predictor needs its own calibrated errors, and this profile recorded only "
            f"{profile.predictors}: calibrate again with Calibrator(..., predictors=['reuse', '{predictor}'])"
        )
    if num_steps is not None and num_steps != profile.num_steps:
        profile = profile.resample(num_steps)
    k = profile.lookahead if lookahead is None else check_int(lookahead, "lookahead", error=ScheduleError)
    if k > profile.lookahead:
        raise ScheduleError(f"lookahead {k} exceeds the profile's calibrated lookahead {profile.lookahead}")
    return profile, k


def _groups(profile: CalibrationProfile, per_block: bool) -> list[tuple[str, str, int | None]]:
    """(schedule key, branch key, block or None) of every row to plan."""
    return [
        (f"{key}-{b}" if per_block else key, key, b if per_block else None)
        for key in profile.keys
        for b in (profile.blocks(key) if per_block else [None])
    ]


def _errors(
    profile: CalibrationProfile,
    covered: list[tuple[str, int | None]],
    predictors: tuple[str, ...],
    k: int,
    whole_steps: bool = False,
    margin: float = 0.0,
) -> RowErrors:
    """The errors of the covered (key, block) branches (their mean, plus ``margin`` times their spread between
    calibration samples), cut to lookahead ``k``. For whole-step rows, linear forecasts reaching ``k >= d``
    past their newest source are ruled out (NaN)."""

    def table(key, block, predictor):
        mean, std = profile.mean_errors(key, block, predictor)
        return mean + margin * std if margin else mean

    reuse = np.mean([table(key, block, "reuse")[:k] for key, block in covered], axis=0)
    linear = None
    if "linear" in predictors:
        linear = np.mean([table(key, block, "linear")[:k, : k + 1] for key, block in covered], axis=0)
        if whole_steps:
            reach, spacing = np.ogrid[1 : k + 1, 1 : k + 2]
            linear[reach >= spacing] = np.nan
    return RowErrors(reuse, linear)


def _scan_row(errors: RowErrors, predictor: str, alpha: float, length: int) -> list[int]:
    if predictor == "reuse":
        t = errors.num_steps
        by_k = [errors.reuse[k - 1, : max(t - k, 0)] for k in range(1, errors.lookahead + 1)]
        return scan(by_k, alpha, length)
    return scan_linear(errors.reuse, errors.linear, alpha, length)


def threshold_rows(
    profile: CalibrationProfile | str,
    alpha: float,
    *,
    lookahead: int | None = None,
    per_block: bool = False,
    num_steps: int | None = None,
    predictor: str = "reuse",
    length: int | None = None,
) -> Rows:
    """Greedy-scan rows at threshold ``alpha``: :func:`plan` with ``alpha``, and ``length`` for the original
    helpers' ``schedule_length`` (the tables scanned as they are into rows of that length, every step past the
    calibrated ones computed; reuse only)."""
    alpha = check_alpha(alpha, error=ScheduleError)
    profile, k = _prepare(profile, lookahead, num_steps, predictor)
    return _threshold(profile, k, alpha, per_block, predictor, length)


def _threshold(
    profile: CalibrationProfile, k: int, alpha: float, per_block: bool, predictor: str, length: int | None
) -> Rows:
    length = profile.num_steps if length is None else check_int(length, "length", error=ScheduleError)
    return {
        name: _scan_row(_errors(profile, [(key, block)], (predictor,), k), predictor, alpha, length)
        for name, key, block in _groups(profile, per_block)
    }


def plan(
    profile: CalibrationProfile | str,
    *,
    alpha: float | None = None,
    speedup: float | None = None,
    compute_fraction: float | None = None,
    predictor: str | None = None,
    planner: str | None = None,
    lookahead: int | None = None,
    per_block: bool = False,
    num_steps: int | None = None,
    cost: str | None = None,
    fuse_blocks: bool | None = None,
    margin: float = 0.0,
) -> Plan:
    """Rows for a profile: at a greedy threshold ``alpha``, or for a budget (``speedup`` or
    ``compute_fraction``).

    Args:
        profile: the calibration (or the path of a saved one).
        alpha: greedy threshold (relative L1 error); the rows of the original's scan.
        speedup, compute_fraction: the budget, as a speed-up or the share of the uncached cost to keep.
        predictor: what a skipped step returns: ``"linear"``, ``"reuse"``, or ``"auto"`` (the optimal planner
            gives each skip run the predictor with the least calibrated error for it). Default None:
            ``"reuse"`` for ``alpha`` (the original's scan); for a budget ``"linear"`` if the profile
            recorded the forecast's errors, except ``"reuse"`` when the calibration's sampler draws fresh
            noise at each step (``profile.stochastic``: a forecast extrapolates that noise), else ``"reuse"``
            (with a logged warning). ``"auto"`` is not the default: its per-run choice follows the
            calibrated error, which ranks reuse too well where a branch's output jitters from step to step
            (a lag that accumulates over the trajectory looks smaller than a forecast's jitter), and on the
            digits DiT (DDIM 50) it lost 5-6 dB PSNR to ``"linear"`` at 1.5-2x.
        planner: ``"optimal"`` (default for budgets) or ``"greedy"`` (the only one for ``alpha``).
        lookahead: the longest skip run (default: the profile's K).
        per_block: one row per block (``"attn1-3"`` keys) instead of one per branch key (greedy) or one for
            the whole model (optimal).
        num_steps: step count of the rows; another than the calibration's resamples the tables first.
        cost: what the budget measures: ``"time"`` (the seconds calibration measured; the default where it
            measured them) or ``"macs"`` (theoretical).
        fuse_blocks: whether the cache will skip whole blocks whose branches all skip (saving their norms and
            modulation too); default: yes, unless ``predictor="reuse"`` was asked for (the original's
            branch-level behaviour). The schedule records it and the cache applies it so.
        margin: plan with each calibrated error raised by this many of its standard deviations between
            calibration samples (0: the mean), for samplers whose noise draws vary.

    A budget out of reach by at most 2% plans the nearest reachable one, with a warning naming it.

    Raises:
        ScheduleError: none or several of alpha / speedup / compute_fraction, a budget out of reach, a
            predictor the profile did not record, an unknown planner or cost, a lookahead beyond the
            profile's, ``cost="time"`` for a profile without timings.
    """
    recommended = predictor is None and alpha is None  # the predictor is the planner's choice
    if predictor is None:
        predictor = _default_predictor(CalibrationProfile.coerce(profile), alpha is None, planner)
    if alpha is not None:
        if speedup is not None or compute_fraction is not None:
            raise ScheduleError(
                "give alpha (a greedy threshold) or a budget (speedup / compute_fraction), not both"
            )
        if planner not in (None, "greedy"):
            raise ScheduleError("the optimal planner plans for a budget: give speedup= or compute_fraction=")
        alpha = check_alpha(alpha, error=ScheduleError)
        profile, k = _prepare(profile, lookahead, num_steps, predictor)
        rows = _threshold(profile, k, alpha, per_block, predictor, None)
        return Plan(
            rows, predictor, {"alpha": alpha, "lookahead": k, "per_block": per_block, "planner": "greedy"}
        )
    target = budget_fraction(compute_fraction, speedup)
    planner = check_choice(planner or "optimal", "planner", PLANNERS, error=ScheduleError)
    profile, k = _prepare(profile, lookahead, num_steps, predictor)
    report = MacReport.for_budget(profile)
    cost = check_choice(
        cost or ("time" if report.has("time") else "macs"), "cost", COSTS, error=ScheduleError
    )
    report.budget(cost, profile.num_steps)  # refuses time without timings
    if predictor == "auto" and planner != "optimal":
        raise ScheduleError(
            "predictor='auto' (each skip run takes the best predictor) needs the optimal planner"
        )
    margin = check_number(margin, "margin", error=ScheduleError)
    # fusion, unless reuse was asked for (the original's branch-level behaviour)
    fused = (recommended or predictor != "reuse") if fuse_blocks is None else bool(fuse_blocks)
    groups = _groups(profile, per_block)
    meta = {
        "lookahead": k,
        "per_block": per_block,
        "planner": planner,
        "budget": target,
        "cost": cost,
        "cost_unit": "seconds" if cost == "time" else report.unit,
        "fused": fused,
    }

    def fraction(rows: Rows) -> float:
        return report.compute_fraction(rows, cost, fused)

    meta["margin"] = margin
    if planner == "optimal":
        rows, choices, error, target = _optimal(
            profile, report, groups, predictor, k, target, cost, fused, margin
        )
        used = sorted({c for row in choices.values() for c in row if c is not None}) or ["reuse"]
        return Plan(
            rows,
            used[0] if len(used) == 1 else "mixed",
            {
                **meta,
                "budget": target,
                "achieved": fraction(rows),
                "planned_error": error,
                "predictors": used,
            },
            choices=choices if len(used) > 1 else None,
        )
    per_row = {
        name: _errors(profile, [(key, block)], (predictor,), k, margin=margin) for name, key, block in groups
    }
    tables = [t for e in per_row.values() for t in (e.reuse, e.linear) if t is not None]
    alpha, rows = budget_alpha(
        tables,
        lambda a: {n: _scan_row(e, predictor, a, profile.num_steps) for n, e in per_row.items()},
        fraction,
        target,
    )
    return Plan(rows, predictor, {**meta, "alpha": alpha, "achieved": fraction(rows)})


def _default_predictor(profile: CalibrationProfile, budget: bool, planner: str | None) -> str:
    if not budget:
        return "reuse"
    if profile.stochastic:
        logger.info(
            "the calibration ran a sampler that draws fresh noise at each step: the recommended mode plans "
            "reuse runs (a forecast extrapolates that noise; on the audio DiT's SDE samplers reuse kept the "
            "output closest at every budget); predictor='auto' or 'linear' plans forecasts anyway"
        )
        return "reuse"
    if "linear" in profile.predictors:
        return "linear"
    logger.warning(
        "this profile recorded no forecast errors, so the plan reuses cached outputs; calibrate with "
        "this version of smoothcache (Calibrator records every predictor) to plan the recommended mode"
    )
    return "reuse"


def _reachable(target: float, best: float, what: str) -> float:
    """``target``, or ``best`` with a warning when the target is out of reach by at most 2%."""
    if target >= best * (1 - 1e-9):
        return target
    if target >= best * (1 - NEAREST):
        warn(
            f"a speed-up of {1 / target:.4g}x is just out of reach ({what}); planned the nearest reachable "
            f"one, {1 / best:.4g}x"
        )
        return best
    raise BudgetError(
        f"{what}: a compute fraction of {target:.4g} (speed-up {1 / target:.4g}x) is out of "
        f"reach: the best these tables allow is {best:.4g} (speed-up {1 / best:.4g}x)",
        best,
    )


def _optimal(
    profile: CalibrationProfile,
    report: MacReport,
    groups,
    predictor: str,
    k: int,
    target: float,
    cost: str,
    fused: bool,
    margin: float = 0.0,
) -> tuple[Rows, dict[str, tuple[str | None, ...]], float, float]:
    """Whole-step rows (one for the model, or one per block) minimising the run-squared error under the
    budget; also returns the budget planned for (the nearest reachable one if ``target`` was just out of
    reach)."""
    predictors = (
        tuple(p for p in PREDICTORS if p in profile.predictors) if predictor == "auto" else (predictor,)
    )
    members: dict[
        int | None, list[tuple[str, str]]
    ] = {}  # block (None: every block) -> [(schedule key, key)]
    for name, key, block in groups:
        members.setdefault(block, []).append((name, key))
    weights: dict[str, float] = {}
    fronts = {}
    for block, items in members.items():
        keys = {key for _, key in items}
        label = "all" if block is None else f"block-{block}"
        covered = [p for p, (key, b) in report.keys.items() if key in keys and (block is None or b == block)]
        weights[label] = report.saving(covered, cost, fused)  # what one skipped step of the row saves
        errors = _errors(profile, [(key, block) for _, key in items], predictors, k, True, margin)
        fronts[label] = frontier(errors, predictors, RUN_POWER)
    steps = profile.num_steps
    per_step, once = report.budget(cost, steps)
    full = per_step * steps + once
    fixed = (per_step - sum(weights.values())) * steps + once  # what no row saves
    least = least_cost(fronts, weights)
    target = _reachable(
        target, (fixed + least) / full, f"optimal planner, lookahead {k}, predictor {predictor!r}"
    )
    result = split_budget(fronts, weights, max(target * full - fixed, least))
    rows = {label: fronts[label].row(n).tolist() for label, n in result.counts.items()}
    used = {label: tuple(fronts[label].run_predictors(n)) for label, n in result.counts.items()}
    labels = {name: "all" if block is None else f"block-{block}" for name, _, block in groups}
    return (
        {name: rows[label] for name, label in labels.items()},
        {name: used[label] for name, label in labels.items()},
        result.total_error,
        target,
    )
