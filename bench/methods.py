"""Every way the quality benchmark generates: the no-cache reference, baselines, smoothcache modes and peers.

Methods are selected by group (``--methods`` of ``python -m bench.quality``); each group gives one family of
points (one line in the Pareto plots). ``kind`` says what a family is in the comparisons: ``"smoothcache"``
(ours), ``"peer"`` (diffusers' caches, cache-dit), ``"baseline"`` (fewer steps, FORA) or ``"reference"``.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Sequence

from smoothcache import MacReport, Schedule, SmoothCache

__all__ = ["DEFAULT_GROUPS", "GROUPS", "SPEEDUPS", "Method", "Setting", "build_methods"]

#: group -> (family shown in tables and plots, kind)
GROUPS: dict[str, tuple[str, str]] = {
    "no-cache": ("no cache", "reference"),
    "fewer-steps": ("fewer steps", "baseline"),
    "fora": ("FORA (reuse every N)", "baseline"),
    "every-n-forecast": ("SmoothCache every-N forecast", "smoothcache"),
    "every-n-forecast-fused": ("SmoothCache every-N forecast, fused blocks", "smoothcache"),
    "greedy-reuse": ("SmoothCache greedy reuse", "smoothcache"),
    "optimal-reuse": ("SmoothCache optimal reuse", "smoothcache"),
    "greedy-forecast": ("SmoothCache greedy forecast", "smoothcache"),
    "optimal-forecast": ("SmoothCache optimal forecast", "smoothcache"),
    "optimal-forecast-fused": ("SmoothCache optimal forecast, fused blocks", "smoothcache"),
    "optimal-forecast-per-block": ("SmoothCache optimal forecast per-block", "smoothcache"),
    "recommended": ("SmoothCache recommended (planned in time, fused runs)", "smoothcache"),
    "auto": ("SmoothCache per-run predictor (auto, planned in time, fused runs)", "smoothcache"),
    "resampled": ("SmoothCache optimal forecast, 50-step calibration resampled", "smoothcache"),
    "taylorseer": ("diffusers TaylorSeer", "peer"),
    "fbc": ("diffusers FirstBlockCache", "peer"),
    "magcache": ("diffusers MagCache", "peer"),
    "pab": ("diffusers PyramidAttentionBroadcast", "peer"),
    "fastercache": ("diffusers FasterCache", "peer"),
    "dbcache": ("cache-dit DBCache", "peer"),
    "dbcache-taylorseer": ("cache-dit DBCache+TaylorSeer", "peer"),
}
#: What a plain run measures (issue 10's list); the others are opt-in.
DEFAULT_GROUPS = (
    "no-cache",
    "fewer-steps",
    "fora",
    "every-n-forecast",
    "every-n-forecast-fused",
    "greedy-reuse",
    "optimal-reuse",
    "greedy-forecast",
    "optimal-forecast",
    "optimal-forecast-fused",
    "recommended",
    "auto",
    "taylorseer",
    "fbc",
    "magcache",
    "dbcache",
    "dbcache-taylorseer",
)
#: Theoretical speed-ups the budgeted schedules aim at (the measured ones land near them).
SPEEDUPS = (1.25, 1.5, 2.0, 2.5, 3.0, 3.5)

_PLANNED = {  # group -> (predictor, planner, per_block, resampled from the 50-step calibration, cost)
    "greedy-reuse": ("reuse", "greedy", False, False, "macs"),
    "optimal-reuse": ("reuse", "optimal", False, False, "macs"),
    "greedy-forecast": ("linear", "greedy", False, False, "macs"),
    "optimal-forecast": ("linear", "optimal", False, False, "macs"),
    "optimal-forecast-fused": ("linear", "optimal", False, False, "macs"),
    "optimal-forecast-per-block": ("linear", "optimal", True, False, "macs"),
    "resampled": ("linear", "optimal", False, True, "macs"),
    "recommended": (None, "optimal", False, False, "time"),  # Schedule.for_budget's defaults
    "auto": ("auto", "optimal", False, False, "time"),
}
#: Groups run with block fusion (a block whose branches all skip a step is skipped whole); the others are
#: branch-level only (``fuse_blocks=False``), as they were measured before fusion existed.
FUSED = {"every-n-forecast-fused", "optimal-forecast-fused", "recommended", "auto"}
_DIFFUSERS = {
    "taylorseer": "TaylorSeer",
    "fbc": "FirstBlockCache",
    "magcache": "MagCache",
    "pab": "PyramidAttentionBroadcast",
    "fastercache": "FasterCache",
}
_CACHEDIT = {"dbcache": "DBCache", "dbcache-taylorseer": "DBCache+TaylorSeer"}
BRANCHES = ("attn1", "ff")


@dataclass
class Method:
    """One way to generate: its family and kind, its step count, its theoretical speed-up and its context.

    Args:
        name: unique, e.g. ``"SmoothCache optimal forecast 2.5x"``.
        family / kind: see :data:`GROUPS`.
        steps: solver steps it runs.
        theoretical: MAC ratio against no cache (for peers: the attn1/ff work they really executed).
        context: a fresh context manager per generation that applies the method.
        info: what else the results should record (alpha, budget, config...).
    """

    name: str
    family: str
    kind: str
    steps: int
    theoretical: float
    context: Callable[[], ContextManager] = contextlib.nullcontext
    info: dict = field(default_factory=dict)

    def row(self, speedups: dict[str, list[float]]) -> dict:
        """The start of its results row: what it is, and its measured speed-up (median of the rounds)."""
        measured = speedups[self.name]
        what = {"family": self.family, "kind": self.kind, "steps": self.steps}
        what["theoretical"] = self.theoretical
        return {**what, **self.info, "measured": statistics.median(measured), "speedups": measured}


@dataclass
class Setting:
    """What the methods of one setting are built from.

    Args:
        pipe: the digits pipeline with the setting's scheduler.
        steps: the setting's step count.
        guidance_scale: the model's.
        profile: the calibration at ``steps``.
        report: MACs of the denoiser (``MacReport.from_profile(profile)``).
        profile50: the 50-step DDIM calibration, for the ``resampled`` group.
        speedups: budget targets of the planned groups.
        time_profile: a calibration at the batch that is timed, for the groups planned in wall time (a plan in
            time holds for the batch it was timed at); ``profile`` when None.
    """

    pipe: object
    steps: int
    guidance_scale: float
    profile: object
    report: MacReport
    profile50: object | None = None
    speedups: Sequence[float] = SPEEDUPS
    time_profile: object | None = None


def _cached(pipe, schedule: Schedule, fuse: bool = False) -> Callable[[], ContextManager]:
    return lambda: SmoothCache(pipe.transformer, schedule, fuse_blocks=fuse)


def _fewer_steps(s: Setting, family: str, kind: str) -> list[Method]:
    out = []
    for fraction in (0.8, 0.66, 0.5, 0.4, 0.33):
        k = max(2, round(s.steps * fraction))
        if k < s.steps:
            out.append(Method(f"{k} steps", family, kind, k, s.steps / k))
    return out


def _every_n(s: Setting, family: str, kind: str, predictor: str, fuse: bool = False) -> list[Method]:
    out = []
    for n in (2, 3, 4):
        schedule = Schedule.fixed_interval(s.steps, n, BRANCHES, predictor=predictor)
        label = "FORA" if predictor == "reuse" else "every-N forecast" + (" fused" if fuse else "")
        out.append(
            Method(
                f"{label} N={n}",
                family,
                kind,
                s.steps,
                s.report.speedup(schedule, "macs", fuse),
                _cached(s.pipe, schedule, fuse),
                {"interval": n, "predictor": predictor, "fused": fuse},
            )
        )
    return out


#: the groups planned in wall time (calibrated at the timed batch when the bench can)
TIME_GROUPS = frozenset(g for g, spec in _PLANNED.items() if spec[4] == "time")


def _planned(s: Setting, group: str, family: str, kind: str, skipped: dict) -> list[Method]:
    from smoothcache import ScheduleError

    predictor, planner, per_block, resampled, cost = _PLANNED[group]
    timed = cost == "time" and s.time_profile is not None and not resampled
    profile = s.time_profile if timed else s.profile
    report = MacReport.from_profile(profile) if timed else s.report
    if resampled:
        if s.profile50 is None or s.profile50.num_steps == s.steps:
            skipped[family] = "only for DDIM settings other than 50 steps (needs the 50-step calibration)"
            return []
        profile = s.profile50.resample(s.steps)
    out = []
    for target in s.speedups:
        name = f"{family} {target:g}x"
        try:
            schedule = Schedule.for_budget(
                profile,
                speedup=target,
                predictor=predictor,
                planner=planner,
                per_block=per_block,
                cost=cost,
                fuse_blocks=group in FUSED,
            )
        except ScheduleError as err:  # budget out of reach for this planner: recorded, not fatal
            skipped[name] = f"ScheduleError: {err}"
            continue
        meta = schedule.metadata
        info = {
            "target_speedup": target,
            "predictor": predictor or schedule.predictor,
            "planner": planner,
            "per_block": per_block,
            "fused": group in FUSED,
            "cost": cost,
            "planned_time": report.speedup(schedule, "time", group in FUSED) if report.has("time") else None,
            "calibration": "timed batch" if timed else "setting",
            **{k: meta[k] for k in ("alpha", "achieved", "planned_error", "predictors") if k in meta},
        }
        out.append(
            Method(
                name,
                family,
                kind,
                s.steps,
                report.speedup(schedule, "macs", group in FUSED),
                _cached(s.pipe, schedule, group in FUSED),
                info,
            )
        )
    return out


def _peers(s: Setting, groups: Sequence[str], kind: str) -> list[Method]:
    from .peers import measure_compute, peer_methods

    points = {}
    diffusers = [_DIFFUSERS[g] for g in groups if g in _DIFFUSERS]
    if diffusers:
        points.update(peer_methods(s.pipe, s.steps, s.guidance_scale, list(range(10)), families=diffusers))
    cachedit = [_CACHEDIT[g] for g in groups if g in _CACHEDIT]
    if cachedit:
        from .cachedit import cachedit_methods

        points.update(cachedit_methods(s.pipe, s.steps, families=cachedit))
    by_family = {fam: GROUPS[g][0] for g, fam in {**_DIFFUSERS, **_CACHEDIT}.items()}
    attn, ff = s.report.by_key()["attn1"], s.report.by_key()["ff"]
    out = []
    for name, peer in points.items():
        # theoretical: the attn1 / ff rows the peer really executed over a generation, weighted by MACs
        count = measure_compute(
            s.pipe,
            peer,
            class_labels=list(range(10)),
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
        )
        saved = attn * (1 - count.attn_fraction) + ff * (1 - count.ff_fraction)
        out.append(
            Method(
                name,
                by_family[peer.family],
                kind,
                s.steps,
                s.report.total / (s.report.total - saved),
                peer.apply,
                {
                    "config": {k: str(v) for k, v in peer.config.items()},
                    "executed_fraction": count.block_fraction,
                },
            )
        )
    return out


def build_methods(setting: Setting, groups: Sequence[str]) -> tuple[list[Method], dict[str, str]]:
    """The methods of ``groups`` for ``setting``, no cache first, and ``{what: why}`` for those left out.

    A group that cannot be built at all (a planner not implemented yet, cache-dit not installed) and a budget
    a planner cannot reach are recorded in the second value instead of stopping the benchmark.
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown method groups {sorted(unknown)}; choose from {list(GROUPS)}")
    methods = [Method("no cache", *GROUPS["no-cache"], setting.steps, 1.0)]
    skipped: dict[str, str] = {}
    peer_groups = [g for g in groups if g in _DIFFUSERS or g in _CACHEDIT]
    for group in groups:
        family, kind = GROUPS[group]
        try:
            if group == "fewer-steps":
                methods += _fewer_steps(setting, family, kind)
            elif group in ("fora", "every-n-forecast", "every-n-forecast-fused"):
                methods += _every_n(
                    setting, family, kind, "reuse" if group == "fora" else "linear", group in FUSED
                )
            elif group in _PLANNED:
                methods += _planned(setting, group, family, kind, skipped)
        except Exception as err:  # noqa: BLE001  (recorded verbatim in the results)
            skipped[family] = f"{type(err).__name__}: {err}"
    for group in peer_groups:  # one group at a time, so one missing dependency does not hide the others
        try:
            methods += _peers(setting, [group], "peer")
        except Exception as err:  # noqa: BLE001
            skipped[GROUPS[group][0]] = f"{type(err).__name__}: {err}"
    return methods, skipped
