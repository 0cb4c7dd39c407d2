"""Cache schedules: which branch computes on which denoising step.

The file format is the one the original SmoothCache implementation publishes: a JSON object mapping a
branch name to a list with one 0/1 entry per denoising step (1 = compute, 0 = reuse the cached output).
A key with a block index (``"attn-3"``) overrides the bare key (``"attn"``) for that block.

A schedule also names the predictor that serves its 0 steps (:mod:`smoothcache.predictors`). Reuse
schedules are written exactly in the original's format, so the original implementation loads them; a
forecast schedule adds ``"predictor": "linear"``, which only smoothcache's :class:`SmoothCache` applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .branches import parse_key, row_for
from .errors import ScheduleError
from .planning import plan
from .predictors import PREDICTORS
from .profile import CalibrationProfile
from .profile_file import check_conditions
from .schedule_file import plan_hint, read_schedule, write_schedule
from .validate import check_choice, check_int

__all__ = ["Schedule", "ScheduleError", "parse_key"]

def _validated_choices(
    choices: Mapping, rows: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[str | None, ...]]:
    """Each key's predictor per step: a predictor name on its 0 steps, None (null) on its 1 steps."""
    if set(choices) != set(rows):
        raise ScheduleError(
            f'the schedule\'s "predictor" mapping names the keys {sorted(map(str, choices))}, '
            f"not the schedule's {sorted(rows)}"
        )
    out = {}
    for key, row in rows.items():
        values = choices[key]
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(row):
            raise ScheduleError(
                f"the predictors of {key!r} must be a list of {len(row)} entries (one per step)"
            )
        for step, (on, value) in enumerate(zip(row, values)):
            if (value is not None) if on else not (isinstance(value, str) and value in PREDICTORS):
                want = "null (a computed step)" if on else f"one of {list(PREDICTORS)}"
                raise ScheduleError(
                    f"the predictor of {key!r} at step {step} is {value!r}; it must be {want}"
                )
        out[key] = tuple(values)
    return out


def _validated_entries(name: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ScheduleError(f"schedule {name!r} must be a list of 0/1 entries, got {type(values).__name__}")
    if len(values) == 0:
        raise ScheduleError(f"schedule {name!r} is empty; it needs one 0/1 entry per denoising step")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1):
            raise ScheduleError(
                f"schedule {name!r}: entry {i} is {v!r}; entries must be 0 (reuse the cache) or 1 (compute)"
            )
        out.append(int(v))
    if out[0] != 1:
        raise ScheduleError(
            f"schedule {name!r}: step 0 is 0, but the first step must compute (1): there is nothing cached "
            "yet"
        )
    return tuple(out)


class Schedule:
    """A static 0/1 compute schedule per branch type, optionally overridden per block, and what its 0 steps
    return.

    Args:
        entries: mapping from key (``"attn1"`` or ``"attn1-3"``) to a list of 0/1, one per denoising step.
            All lists must have the same length and start with 1.
        metadata: free-form information kept with the schedule (alpha, source, ...); not saved to JSON.
        predictor: what a 0 step returns: ``"reuse"`` (the last computed output, as in the paper),
            ``"linear"`` (extrapolated from the last two computed outputs), or a mapping giving each key's
            predictor per step (``None`` on its 1 steps), for plans that choose the predictor per skip run. A
            mapping of entries may carry it under the key ``"predictor"``, as schedule files do.
        conditions: the pipeline arguments of the calibration it was planned from (``{"guidance_scale":
            1.0}``; key ``"conditions"`` in files); a cache applying it warns when the pipeline runs with
            others.
        fused: whether it was planned for block fusion (key ``"fuse_blocks"`` in files; None: not said, as in
            the original's files); a :class:`~smoothcache.SmoothCache` applies it the way it was planned.
    """

    def __init__(
        self,
        entries: Mapping[str, Sequence[int]],
        metadata: Mapping[str, object] | None = None,
        predictor: str | Mapping[str, Sequence[str | None]] | None = None,
        conditions: Mapping[str, float] | None = None,
        fused: bool | None = None,
    ):
        if isinstance(entries, Schedule):
            predictor = predictor or entries.choices or entries.predictor
            conditions = entries.conditions if conditions is None else conditions
            fused = entries.fused if fused is None else fused
            entries = entries.entries
        if isinstance(entries, Mapping) and ("conditions" in entries or "fuse_blocks" in entries):
            entries = dict(entries)
            conditions = entries.pop("conditions", None) if conditions is None else conditions
            fused = entries.pop("fuse_blocks", None) if fused is None else fused
        if fused is not None and not isinstance(fused, bool):
            raise ScheduleError(f'the schedule\'s "fuse_blocks" must be true or false, got {fused!r}')
        if not isinstance(entries, Mapping):
            raise ScheduleError(
                f"a schedule must be a mapping of branch name to 0/1 list, got {type(entries).__name__}"
            )
        if "predictor" in entries:
            entries = dict(entries)
            named = entries.pop("predictor")
            if predictor is not None and predictor != named:
                raise ScheduleError(
                    f"the schedule names predictor {named!r} but predictor={predictor!r} was given"
                )
            predictor = named
        if len(entries) == 0:
            raise ScheduleError("the schedule is empty: it names no branch")
        parsed: dict[str, tuple[int, ...]] = {}
        for key, values in entries.items():
            parse_key(key)
            parsed[key] = _validated_entries(key, values)
        lengths = {key: len(v) for key, v in parsed.items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise ScheduleError(
                f"schedule lists have different lengths ({listing}); all need one entry per step"
            )
        self.entries: dict[str, tuple[int, ...]] = parsed
        #: per key, the predictor of each 0 step (None on 1 steps), for a plan that mixes predictors; else
        # None
        self.choices: dict[str, tuple[str | None, ...]] | None = None
        if isinstance(predictor, Mapping):
            self.choices = _validated_choices(predictor, parsed)
            used = {p for row in self.choices.values() for p in row if p is not None}
            predictor = used.pop() if len(used) == 1 else ("mixed" if used else "reuse")
            if predictor != "mixed":
                self.choices = None
        elif predictor is not None and not isinstance(predictor, str):
            raise ScheduleError(
                f'the schedule\'s "predictor" must be one of {list(PREDICTORS)} or a mapping of '
                f"each key's predictor per step, got {predictor!r}"
            )
        predictor = "reuse" if predictor is None else predictor
        if predictor != "mixed":
            check_choice(predictor, "predictor", PREDICTORS, error=ScheduleError)
        #: ``"reuse"``, ``"linear"``, or ``"mixed"`` (see :attr:`choices`)
        self.predictor = predictor
        self.metadata: dict[str, object] = dict(metadata or {})
        #: the pipeline arguments of the calibration (``{"guidance_scale": 1.0}``), empty if unknown
        self.conditions: dict[str, float] = check_conditions(conditions or {}, ScheduleError)
        #: planned for block fusion (True / False), or not said (None: fusion for forecasts only)
        self.fused: bool | None = fused

    # ----------------------------------------------------------------- queries
    @property
    def num_steps(self) -> int:
        """Number of denoising steps the schedule covers."""
        return len(next(iter(self.entries.values())))

    @property
    def branch_keys(self) -> list[str]:
        """Branch names the schedule mentions (block indices stripped), in first-seen order."""
        seen: dict[str, None] = {}
        for key in self.entries:
            seen.setdefault(parse_key(key)[0], None)
        return list(seen)

    def block_indices(self, branch: str) -> list[int]:
        """Block indices that have their own key for ``branch``."""
        return sorted(b for k in self.entries for n, b in [parse_key(k)] if n == branch and b is not None)

    def for_block(self, key: str, block: int | None) -> tuple[int, ...] | None:
        """The row of branch key ``key`` in ``block``: the per-block key wins over the bare key; None if
        neither."""
        return row_for(self.entries, key, block)

    def predictors_for(self, key: str, block: int | None) -> tuple[str | None, ...] | None:
        """The predictor of each step of :meth:`for_block` ``(key, block)`` (None on its 1 steps)."""
        if self.choices is not None:
            return row_for(self.choices, key, block)
        row = self.for_block(key, block)
        return None if row is None else tuple(None if v else self.predictor for v in row)

    @property
    def sources_needed(self) -> list[str]:
        """The predictors the schedule uses."""
        if self.choices is None:
            return [self.predictor]
        return sorted({p for row in self.choices.values() for p in row if p is not None})

    def compute_fraction(self, key: str | None = None) -> float | dict[str, float]:
        """Fraction of steps computed: for one key, or a dict for every key."""
        if key is not None:
            if key not in self.entries:
                raise KeyError(f"schedule has no key {key!r}; keys: {sorted(self.entries)}")
            values = self.entries[key]
            return sum(values) / len(values)
        return {k: sum(v) / len(v) for k, v in self.entries.items()}

    # ------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, object]:
        """The JSON content as a plain dict: the reference format, plus ``"predictor"`` for forecasts (a
        mapping of each key's predictor per step when the plan mixes them)."""
        out: dict[str, object] = {k: list(v) for k, v in self.entries.items()}
        if self.choices is not None:
            out["predictor"] = {k: list(v) for k, v in self.choices.items()}
        elif self.predictor != "reuse":
            out["predictor"] = self.predictor
        if self.conditions:
            out["conditions"] = dict(self.conditions)
        if self.fused is not None:
            out["fuse_blocks"] = self.fused
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Schedule)
            and self.entries == other.entries
            and self.predictor == other.predictor
            and self.choices == other.choices
        )

    def __repr__(self) -> str:
        fractions = ", ".join(f"{k}={f:.2f}" for k, f in list(self.compute_fraction().items())[:6])
        more = ", ..." if len(self.entries) > 6 else ""
        predictor = "" if self.predictor == "reuse" else f", predictor={self.predictor}"
        return f"Schedule(steps={self.num_steps}{predictor}, compute fraction: {fractions}{more})"

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        """Read a schedule JSON file (the reference format; UTF-8, or UTF-16/32 with or without a BOM)."""
        path, data = read_schedule(path)
        try:
            return cls(data, metadata={"source": str(path)})
        except ScheduleError as err:
            raise ScheduleError(f"schedule file {path}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the schedule as JSON, one key per line (readable and diff-friendly)."""
        return write_schedule(path, self.to_dict())

    @classmethod
    def coerce(cls, schedule: "Schedule | Mapping[str, Sequence[int]] | str | Path") -> "Schedule":
        """Accept a Schedule, a dict in the reference format, or a path to a JSON file."""
        from .profile import CalibrationProfile

        if isinstance(schedule, Schedule):
            return schedule
        if isinstance(schedule, (str, Path)):
            return cls.load(schedule)
        if isinstance(schedule, CalibrationProfile):
            raise ScheduleError(f"got a calibration profile, not a schedule: {plan_hint()}")
        return cls(schedule)

    # ------------------------------------------------------------- generators
    @classmethod
    def full(cls, num_steps: int, branches: Iterable[str], predictor: str = "reuse") -> "Schedule":
        """All-ones schedule: every branch computes every step (output identical to no caching)."""
        check_int(num_steps, "num_steps", error=ScheduleError)
        return cls({b: [1] * num_steps for b in branches}, metadata={"kind": "full"}, predictor=predictor)

    @classmethod
    def fixed_interval(
        cls, num_steps: int, interval: int, branches: Iterable[str], predictor: str = "reuse"
    ) -> "Schedule":
        """FORA-style schedule: compute every ``interval``-th step, always computing the last step."""
        check_int(num_steps, "num_steps", error=ScheduleError)
        check_int(interval, "interval", error=ScheduleError)
        row = [1 if i % interval == 0 else 0 for i in range(num_steps)]
        row[-1] = 1
        return cls(
            {b: row for b in branches},
            metadata={"kind": "fixed_interval", "interval": interval},
            predictor=predictor,
        )

    @classmethod
    def from_profile(
        cls,
        profile: "CalibrationProfile | str | Path",
        alpha: float,
        lookahead: int | None = None,
        per_block: bool = False,
        num_steps: int | None = None,
        predictor: str = "reuse",
    ) -> "Schedule":
        """The original implementation's schedule: the greedy scan of the calibrated errors at threshold
        ``alpha`` (:mod:`smoothcache.planning.greedy`); with the default ``predictor="reuse"`` it gives the
        original's rows.

        Args:
            profile: the calibration (or the path of a saved profile).
            alpha: the error threshold, a relative L1 error (e.g. 0.08); larger skips more.
            lookahead: the longest skip run (default None: the profile's K).
            per_block: one row per block (``"attn1-3"`` keys) instead of one per branch key (default False).
            num_steps: the schedule's step count (default None: the calibration's); another resamples the
                tables.
            predictor: ``"reuse"`` (default) or ``"linear"`` (scan the forecast's own errors).

        Raises:
            ScheduleError: a bad alpha or lookahead, or a predictor the profile did not record.
            ProfileError: a profile path that does not hold a valid profile.
        """
        profile = CalibrationProfile.coerce(profile)
        result = plan(
            profile,
            alpha=alpha,
            lookahead=lookahead,
            per_block=per_block,
            num_steps=num_steps,
            predictor=predictor,
        )
        return cls(result.rows, result.metadata, predictor=predictor, conditions=profile.conditions)

    @classmethod
    def for_budget(
        cls,
        profile: "CalibrationProfile | str | Path",
        *,
        speedup: float | None = None,
        compute_fraction: float | None = None,
        **options: Any,
    ) -> "Schedule":
        """The schedule with the least calibrated error that reaches a ``speedup`` (or keeps at most
        ``compute_fraction`` of the uncached cost), in the recommended mode by default.

        The cost is measured in seconds when the calibration timed the model (each block, branch and the rest
        of a step), else in MACs (a skipped ``ff`` saves more than a skipped ``attn1``; every branch call the
        same for a profile without MAC counts). With block fusion a step on which a block's branches all skip
        saves the whole block. A budget out of reach by at most 2% plans the nearest reachable one, with a
        warning. The metadata records the budget, the cost, the fraction achieved and, for the optimal
        planner, the planned error.

        Args:
            profile: the calibration (or the path of a saved profile).
            speedup: the speed-up to reach, >= 1 (give this or ``compute_fraction``).
            compute_fraction: the share of the uncached cost to keep, in (0, 1].

        Options (keywords, as :func:`smoothcache.planning.plan` takes them):
            predictor: what a skipped step returns: ``"linear"`` (the forecast), ``"reuse"`` (the cached
                output, as in the paper) or ``"auto"`` (each skip run takes the predictor with the least
                calibrated error for it, so the plan is never worse by its own measure than one predictor
                alone; measured better on some models, worse on others: see
                :func:`~smoothcache.planning.plan`).
                Default None, the recommended mode: ``"linear"`` if the profile recorded the forecast's
                errors, ``"reuse"`` for a calibration on a sampler that draws fresh noise at each step (a
                forecast extrapolates that noise; logged), else ``"reuse"`` (with a logged warning).
            planner: ``"optimal"`` (default: whole-step rows chosen by exact dynamic programming) or
                ``"greedy"`` (the original's scan at the smallest alpha that meets the budget).
            lookahead: the longest skip run (default None: the profile's K).
            per_block: plan each block on its own (``"attn1-3"`` keys; default False).
            num_steps: the schedule's step count (default None: the calibration's); another resamples the
                tables.
            cost: ``"time"`` (wall time, as calibration measured it) or ``"macs"`` (theoretical). Default
                None: time where the profile holds timings, else MACs.
            fuse_blocks: whether the cache skips whole blocks (default None: yes, unless
                ``predictor="reuse"`` was asked for); the schedule records it (``fused``) and a
                :class:`~smoothcache.SmoothCache` applies it so.
            margin: plan with each calibrated error raised by this many of its standard deviations between
                calibration samples (default 0: the mean).

        Raises:
            ScheduleError: none or both of speedup / compute_fraction, a budget these tables cannot reach (the
                message names the best reachable speed-up), a predictor the profile did not record (calibrate
                with it), an unknown planner or cost, a lookahead beyond the profile's, ``cost="time"`` for a
                profile without timings.
            ProfileError: a profile path that does not hold a valid profile.
        """
        profile = CalibrationProfile.coerce(profile)
        result = plan(profile, speedup=speedup, compute_fraction=compute_fraction, **options)
        return cls(
            result.rows,
            result.metadata,
            predictor=result.choices or result.predictor,
            conditions=profile.conditions,
            fused=result.metadata["fused"],
        )
