"""Cache schedules: which branch computes on which denoising step.

The file format is the one the original SmoothCache implementation publishes: a JSON object mapping a
branch name to a list with one 0/1 entry per denoising step (1 = compute, 0 = reuse the cached output).
A key with a block index (``"attn-3"``) overrides the bare key (``"attn"``) for that block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .profile import CalibrationProfile

__all__ = ["Schedule", "ScheduleError", "parse_key"]

_KEY = re.compile(r"^(?P<branch>[A-Za-z_][A-Za-z0-9_.]*?)(?:-(?P<block>\d+))?$")


class ScheduleError(ValueError):
    """A schedule is malformed or does not fit the model or the generation it is used with."""


def parse_key(key: str) -> tuple[str, int | None]:
    """Split a schedule key into its branch name and optional block index: ``"attn-3"`` -> ``("attn", 3)``."""
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise ScheduleError(
            f"schedule key {key!r} is not a branch name or 'branch-<block index>' (e.g. 'attn1' or 'attn1-3')"
        )
    block = match.group("block")
    return match.group("branch"), (int(block) if block is not None else None)


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
            f"schedule {name!r}: step 0 is 0, but the first step must compute (1): there is nothing cached yet"
        )
    return tuple(out)


class Schedule:
    """A static 0/1 compute schedule per branch type, optionally overridden per block.

    Args:
        entries: mapping from key (``"attn1"`` or ``"attn1-3"``) to a list of 0/1, one per denoising step.
            All lists must have the same length and start with 1.
        metadata: free-form information kept with the schedule (alpha, source, ...); not saved to JSON.
    """

    def __init__(self, entries: Mapping[str, Sequence[int]], metadata: Mapping[str, object] | None = None):
        if isinstance(entries, Schedule):
            entries = entries.entries
        if not isinstance(entries, Mapping):
            raise ScheduleError(f"a schedule must be a mapping of branch name to 0/1 list, got {type(entries).__name__}")
        if len(entries) == 0:
            raise ScheduleError("the schedule is empty: it names no branch")
        parsed: dict[str, tuple[int, ...]] = {}
        for key, values in entries.items():
            parse_key(key)
            parsed[key] = _validated_entries(key, values)
        lengths = {key: len(v) for key, v in parsed.items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise ScheduleError(f"schedule lists have different lengths ({listing}); all need one entry per step")
        self.entries: dict[str, tuple[int, ...]] = parsed
        self.metadata: dict[str, object] = dict(metadata or {})

    # ----------------------------------------------------------------- queries
    @property
    def num_steps(self) -> int:
        """Number of denoising steps the schedule covers."""
        return len(next(iter(self.entries.values())))

    @property
    def branches(self) -> list[str]:
        """Branch names the schedule mentions (block indices stripped), in first-seen order."""
        seen: dict[str, None] = {}
        for key in self.entries:
            seen.setdefault(parse_key(key)[0], None)
        return list(seen)

    def block_indices(self, branch: str) -> list[int]:
        """Block indices that have their own key for ``branch``."""
        return sorted(b for k in self.entries for n, b in [parse_key(k)] if n == branch and b is not None)

    def for_block(self, branch: str, block: int | None) -> tuple[int, ...] | None:
        """The list for ``branch`` in ``block``: the per-block key wins over the bare key; None if neither."""
        if block is not None:
            specific = self.entries.get(f"{branch}-{block}")
            if specific is not None:
                return specific
        return self.entries.get(branch)

    def compute_fraction(self, key: str | None = None) -> float | dict[str, float]:
        """Fraction of steps computed: for one key, or a dict for every key."""
        if key is not None:
            if key not in self.entries:
                raise KeyError(f"schedule has no key {key!r}; keys: {sorted(self.entries)}")
            values = self.entries[key]
            return sum(values) / len(values)
        return {k: sum(v) / len(v) for k, v in self.entries.items()}

    # ------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, list[int]]:
        """The reference JSON format as a plain dict."""
        return {k: list(v) for k, v in self.entries.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.entries == other.entries

    def __repr__(self) -> str:
        fractions = ", ".join(f"{k}={f:.2f}" for k, f in list(self.compute_fraction().items())[:6])
        more = ", ..." if len(self.entries) > 6 else ""
        return f"Schedule(steps={self.num_steps}, compute fraction: {fractions}{more})"

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        """Read a schedule JSON file (the reference format)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ScheduleError(f"cannot read schedule file {path}: {err.strerror or err}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ScheduleError(f"schedule file {path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ScheduleError(f"schedule file {path} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls(data, metadata={"source": str(path)})
        except ScheduleError as err:
            raise ScheduleError(f"schedule file {path}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the schedule as JSON, one key per line (readable and diff-friendly)."""
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"    {json.dumps(k)}: {json.dumps(list(v), separators=(',', ':'))}" for k, v in self.entries.items()]
        path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
        return path

    @classmethod
    def coerce(cls, schedule: "Schedule | Mapping[str, Sequence[int]] | str | Path") -> "Schedule":
        """Accept a Schedule, a dict in the reference format, or a path to a JSON file."""
        if isinstance(schedule, Schedule):
            return schedule
        if isinstance(schedule, (str, Path)):
            return cls.load(schedule)
        return cls(schedule)

    # ------------------------------------------------------------- generators
    @classmethod
    def full(cls, num_steps: int, branches: Iterable[str]) -> "Schedule":
        """All-ones schedule: every branch computes every step (output identical to no caching)."""
        _check_steps(num_steps)
        return cls({b: [1] * num_steps for b in branches}, metadata={"kind": "full"})

    @classmethod
    def fixed_interval(cls, num_steps: int, interval: int, branches: Iterable[str]) -> "Schedule":
        """FORA-style schedule: compute every ``interval``-th step, always computing the last step."""
        _check_steps(num_steps)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ScheduleError(f"interval must be an integer >= 1, got {interval!r}")
        row = [1 if i % interval == 0 else 0 for i in range(num_steps)]
        row[-1] = 1
        return cls({b: row for b in branches}, metadata={"kind": "fixed_interval", "interval": interval})

    @classmethod
    def from_profile(
        cls,
        profile: "CalibrationProfile",
        alpha: float,
        lookahead: int | None = None,
        per_block: bool = False,
        num_steps: int | None = None,
    ) -> "Schedule":
        """Error-guided schedule from calibration curves and threshold ``alpha`` (see :mod:`smoothcache.scan`).

        ``per_block`` gives every block its own list (``"attn1-3"`` keys); ``num_steps`` other than the
        calibration's resamples the curves to that step count.
        """
        from .scan import schedule_from_profile

        return schedule_from_profile(profile, alpha, lookahead=lookahead, per_block=per_block, num_steps=num_steps)

    @classmethod
    def for_budget(
        cls,
        profile: "CalibrationProfile",
        *,
        compute_fraction: float | None = None,
        speedup: float | None = None,
        lookahead: int | None = None,
        per_block: bool = False,
    ) -> "Schedule":
        """The least aggressive error-guided schedule that keeps at most ``compute_fraction`` of the
        compute, or reaches a theoretical ``speedup`` (alpha found by bisection)."""
        from .scan import schedule_for_budget

        return schedule_for_budget(profile, compute_fraction=compute_fraction, speedup=speedup,
                                   lookahead=lookahead, per_block=per_block)


def _check_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ScheduleError(f"num_steps must be an integer >= 1, got {num_steps!r}")

