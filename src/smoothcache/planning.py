"""From a calibration profile to schedule rows: the greedy scan at a threshold, or a plan for a budget.

Rows are planned per branch type (tables averaged over blocks, as in the paper) or per block. Budgets are
MAC-weighted when the profile recorded MACs (a skipped ``ff`` saves more than a skipped ``attn1``), else
every row counts the same. :class:`~smoothcache.schedule.Schedule` wraps the rows returned here.

The optimal planner (``planner="optimal"``) plans *whole steps*: every branch type (of the model, or of one
block with ``per_block=True``) computes on the same steps, because skipping all branches of a step together
costs much less than skipping them on different steps (on the digits DiT, every-other-step reuse measures
50.3 dB PSNR against the uncached samples with both branch types skipped together and 44.5 dB with
``attn1`` and ``ff`` skipped on alternate steps, at the same compute). Its objective sums, over the skip
runs, the square of the run's summed error (the branches' mean calibrated error): the steps of one run are
predicted from the same sources, so their errors add up coherently, while different runs are treated as
independent. A linear forecast is never allowed to reach as far past its newest source as its two sources
are apart (a skip run is never longer than the run before it): extrapolating further amplifies the error
the skipped steps have already put into the trajectory, which the calibration (made on the uncached
trajectory) cannot see.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .allocation import plan_for_budget as _allocate
from .errors import ScheduleError
from .planner import ErrorTable, PlanError
from .predictors import PREDICTORS
from .profile import CalibrationProfile
from .scan import scan, scan_linear
from .validate import check_choice, check_fraction, check_int, check_number

__all__ = ["PLANNERS", "plan_for_budget", "plan_from_profile"]

#: How :func:`plan_for_budget` chooses rows.
PLANNERS = ("greedy", "optimal")
#: The optimal planner's cost of a skip run: (sum of its steps' errors) ** RUN_POWER.
RUN_POWER = 2.0

Rows = dict[str, list[int]]


def _prepare(profile: "CalibrationProfile", lookahead: int | None, num_steps: int | None, predictor: str):
    profile = CalibrationProfile.coerce(profile)
    check_choice(predictor, "predictor", PREDICTORS, error=ScheduleError)
    if predictor not in profile.predictors:
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


def _groups(profile: "CalibrationProfile", per_block: bool) -> list[tuple[str, str, int | None]]:
    """(schedule key, branch key, block or None) of every row to plan."""
    return [(f"{key}-{b}" if per_block else key, key, b if per_block else None)
            for key in profile.keys for b in (profile.blocks(key) if per_block else [None])]


def _tables(profile, key, block, predictor, k):
    reuse = profile.curves(key, block, "reuse")[0][:k]
    linear = profile.curves(key, block, "linear")[0][:k, : k + 1] if predictor == "linear" else None
    return reuse, linear


def _scan_row(profile, key, block, predictor, k, alpha, length) -> list[int]:
    if predictor == "reuse":
        return scan(profile.rows(key, block)[:k], alpha, length)
    reuse, linear = _tables(profile, key, block, predictor, k)
    return scan_linear(reuse, linear, alpha, length)


def plan_from_profile(
    profile: "CalibrationProfile",
    alpha: float,
    *,
    lookahead: int | None = None,
    per_block: bool = False,
    num_steps: int | None = None,
    pad_to: int | None = None,
    predictor: str = "reuse",
) -> tuple[Rows, dict]:
    """Greedy-scan rows at threshold ``alpha``, and the schedule's metadata.

    Args:
        profile: the calibration.
        alpha: error threshold; larger means more skipping.
        lookahead: use prediction distances up to this K (default: the profile's K).
        per_block: one row per block (``"attn1-3"`` keys) instead of one per branch type.
        num_steps: step count of the schedule; if it differs from the calibration's, the tables are first
            resampled to it (:func:`smoothcache.resample.resample`).
        pad_to: the original implementation's ``schedule_length``: scan the tables as they are into a list
            of this length, computing every step past the calibrated ones (reuse only).
        predictor: whose errors to scan.
    """
    alpha = check_number(alpha, "alpha", error=ScheduleError)
    profile, k = _prepare(profile, lookahead, num_steps, predictor)
    length = profile.num_steps if pad_to is None else pad_to
    rows = {name: _scan_row(profile, key, block, predictor, k, alpha, length)
            for name, key, block in _groups(profile, per_block)}
    return rows, {"alpha": alpha, "lookahead": k, "per_block": per_block, "planner": "greedy"}


def _cost_fn(profile: "CalibrationProfile") -> tuple[Callable[[Rows], float], str]:
    """Share of a generation's compute that rows keep: MAC-weighted when the profile has MACs."""
    macs = profile.macs
    if "total" not in macs:
        return (lambda rows: float(np.mean([sum(r) / len(r) for r in rows.values()]))), "schedule entries"
    paths = [(p, b.key, b.block) for p, b in profile.errors.items() if p in macs]

    def fraction(rows: Rows) -> float:
        steps = len(next(iter(rows.values())))
        saved = 0.0
        for path, key, block in paths:
            row = rows.get(f"{key}-{block}", rows.get(key))
            if row is not None:
                saved += macs[path] * (steps - sum(row))
        return 1.0 - saved / (macs["total"] * steps)

    return fraction, "MACs"


def _target(compute_fraction: float | None, speedup: float | None) -> float:
    if (compute_fraction is None) == (speedup is None):
        raise ScheduleError("give exactly one of compute_fraction or speedup")
    if speedup is not None:
        return 1.0 / check_number(speedup, "speedup", minimum=1.0, finite=False, error=ScheduleError)
    return check_fraction(compute_fraction, "compute_fraction", error=ScheduleError)


def plan_for_budget(
    profile: "CalibrationProfile",
    *,
    compute_fraction: float | None = None,
    speedup: float | None = None,
    lookahead: int | None = None,
    per_block: bool = False,
    num_steps: int | None = None,
    predictor: str = "reuse",
    planner: str = "greedy",
) -> tuple[Rows, dict]:
    """Rows whose cost meets a budget: ``compute_fraction`` of the uncached compute, or a theoretical ``speedup``.

    ``planner="greedy"``: the least aggressive greedy scan that meets the budget. The scan only changes where
    alpha crosses a recorded error, so the search bisects the sorted recorded errors for the smallest alpha
    that meets the budget. ``planner="optimal"``: whole-step rows (every branch type of the model, or of a
    block with ``per_block``, on the same steps) chosen by exact dynamic programming
    (:func:`smoothcache.planner.error_curve`, and :func:`smoothcache.allocation.plan` across blocks) to minimise
    the sum over skip runs of the squared summed calibrated error of ``predictor``; linear forecasts never
    reach as far past their newest source as their sources are apart. The metadata then holds the
    objective's value as ``"planned_error"``.
    """
    target = _target(compute_fraction, speedup)
    check_choice(planner, "planner", PLANNERS, error=ScheduleError)
    profile, k = _prepare(profile, lookahead, num_steps, predictor)
    cost, unit = _cost_fn(profile)
    groups = _groups(profile, per_block)
    meta = {"lookahead": k, "per_block": per_block, "planner": planner, "budget": target, "cost_unit": unit}
    if planner == "optimal":
        rows, error = _optimal(profile, groups, predictor, k, target)
        return rows, {**meta, "achieved": cost(rows), "planned_error": error}

    values = {0.0}
    for _, key, block in groups:
        for table in _tables(profile, key, block, predictor, k):
            if table is not None:
                values.update(float(v) for v in table.ravel() if math.isfinite(v))
    candidates = sorted(values)

    def build(alpha: float) -> Rows:
        return {name: _scan_row(profile, key, block, predictor, k, alpha, profile.num_steps)
                for name, key, block in groups}

    most = build(candidates[-1])
    if cost(most) > target + 1e-12:
        raise ScheduleError(
            f"no alpha reaches a compute fraction of {target:.1%} ({unit}); the most aggressive greedy schedule "
            f"of this calibration (lookahead {k}) keeps {cost(most):.1%} (speed-up {1 / cost(most):.2f}x)"
        )
    lo, hi = 0, len(candidates) - 1  # invariant: candidates[hi] meets the budget
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(build(candidates[mid])) <= target + 1e-12:
            hi = mid
        else:
            lo = mid + 1
    rows = build(candidates[hi])
    return rows, {**meta, "alpha": candidates[hi], "achieved": cost(rows)}


def _joint_table(profile: "CalibrationProfile", covered: list[tuple[str, int | None]], predictor: str,
                 k: int) -> ErrorTable:
    """The mean of the covered branches' tables; linear forecasts reaching ``k >= d`` are ruled out (NaN)."""
    reuse = np.mean([profile.curves(key, block, "reuse")[0][:k] for key, block in covered], axis=0)
    linear = None
    if predictor == "linear":
        linear = np.mean([profile.curves(key, block, "linear")[0][:k, : k + 1] for key, block in covered], axis=0)
        reach, spacing = np.ogrid[1: k + 1, 1: k + 2]
        linear[reach >= spacing] = np.nan
    return ErrorTable(reuse, linear)


def _optimal(profile: "CalibrationProfile", groups, predictor: str, k: int, target: float) -> tuple[Rows, float]:
    """Whole-step rows (one per model, or per block) minimising the run-squared error under the budget.

    Returns the rows by schedule key and the planned error (the objective's value).
    """
    rows: dict[int | None, list[tuple[str, str]]] = {}  # block (None: every block) -> [(schedule key, branch key)]
    for name, key, block in groups:
        rows.setdefault(block, []).append((name, key))
    macs = profile.macs
    weight, total = {}, float(macs.get("total", len(groups)))
    for block, members in rows.items():
        if "total" in macs:
            keys = {key for _, key in members}
            weight[block] = sum(macs[path] for path, b in profile.errors.items()
                                if path in macs and b.key in keys and (block is None or b.block == block))
        else:
            weight[block] = float(len(members))
    names = {block: "all" if block is None else f"block-{block}" for block in rows}
    tables = {names[block]: _joint_table(profile, [(key, block) for _, key in members], predictor, k)
              for block, members in rows.items()}
    try:
        plan = _allocate(tables, {names[b]: weight[b] for b in rows}, total, compute_fraction=target,
                         predictor=predictor, power=RUN_POWER)
    except PlanError as err:
        raise ScheduleError(f"optimal planner (lookahead {k}, predictor {predictor!r}): {err}") from None
    out = {name: plan.rows[names[block]] for block, members in rows.items() for name, _ in members}
    return {name: out[name] for name, _, _ in groups}, plan.total_error
