"""Pipeline-level verbs: one :class:`SmoothCache` per denoiser of a pipeline, on and off in one call.

A pipeline's denoisers are its components named ``transformer``, ``transformer_2``... and ``unet``... (Wan 2.2
A14B has two experts; each gets its own cache, counting steps from its own first call). Built only on the
public API: ``enable`` makes ``SmoothCache(pipe.<name>, schedule, **kwargs)`` for each denoiser.

Example:
    >>> import smoothcache
    >>> caches = smoothcache.enable(pipe, alpha=0.08)          # doctest: +SKIP
    >>> images = pipe(prompt, num_inference_steps=30).images   # doctest: +SKIP  (calibrates, first run)
    >>> images = pipe(prompt, num_inference_steps=30).images   # doctest: +SKIP  (cached)
    >>> print(smoothcache.summary(pipe))                        # doctest: +SKIP
    >>> smoothcache.disable(pipe)                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Mapping, Sequence

import torch.nn as nn

from .cache import SmoothCache
from .denoisers import DENOISER_NAME, denoisers
from .errors import TargetError
from .patching import owners_in

__all__ = ["disable", "enable", "summary"]

logger = logging.getLogger(__name__)


class _Registry:
    """The caches ``enable`` put on each pipeline: weakly keyed, or by id (holding the pipeline) for objects
    that cannot be weakly referenced."""

    def __init__(self):
        self._weak: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
        self._strong: dict[int, tuple[Any, dict]] = {}

    def get(self, pipe: Any) -> dict | None:
        try:
            return self._weak.get(pipe)
        except TypeError:
            return self._strong.get(id(pipe), (None, None))[1]

    def set(self, pipe: Any, caches: dict) -> None:
        try:
            self._weak[pipe] = caches
        except TypeError:
            self._strong[id(pipe)] = (pipe, caches)

    def pop(self, pipe: Any) -> dict | None:
        try:
            return self._weak.pop(pipe, None)
        except TypeError:
            return self._strong.pop(id(pipe), (None, None))[1]


_ACTIVE = _Registry()


def _is_row(value: Any) -> bool:
    return (
        isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, int) for v in value)
    )


def _per_denoiser(schedule: Any, models: Mapping[str, nn.Module], pipe: Any) -> dict[str, Any]:
    """``schedule`` spread over the denoisers: the same for each, or a ``{name: schedule}`` mapping."""
    if (
        isinstance(schedule, Mapping)
        and schedule
        and all(isinstance(k, str) and DENOISER_NAME.match(k) for k in schedule)
        and not any(_is_row(v) for v in schedule.values())
    ):
        unknown = [k for k in schedule if k not in models]
        if unknown:
            raise TargetError(
                f"{type(pipe).__name__} has no denoiser {unknown}; its denoisers are {list(models)}"
            )
        return {name: schedule.get(name) for name in models}
    return {name: schedule for name in models}


def enable(pipe: Any, schedule: Any = None, **kwargs: Any) -> dict:
    """Cache every denoiser of ``pipe``; returns ``{name: SmoothCache}``.

    Calling it again replaces the caches (the previous ones are disabled first). Each denoiser counts its own
    steps from its own first call: Wan 2.2's experts each run part of the steps, so give them one schedule
    each (a mapping), or use ``alpha=``, which calibrates each on the steps it runs.

    Args:
        pipe: the pipeline.
        schedule: a :class:`Schedule` (or its dict / JSON path) used for every denoiser, or a mapping
            ``{"transformer": schedule, "transformer_2": other}``; a denoiser mapped to None, or left out of
            the mapping, is not cached. Without a schedule, give ``speedup=`` (the recommended one-line mode:
            each denoiser calibrates on the first generation(s), then caches with the optimal plan for this
            speed-up), a quality target such as ``min_psnr=`` (the fastest budget meeting it), or ``alpha=``
            (the same with the original's greedy schedule).
        **kwargs: passed to every :class:`SmoothCache`: ``speedup`` or ``alpha``, and ``keys``,
            ``block_classes``, ``calls_per_step``, ``cache_dtype``, ``fuse_blocks``; with ``speedup`` /
            ``alpha`` also ``lookahead``, ``calibration_runs``, ``per_block``, ``predictor`` (a keyword of
            the other mode raises a ``TypeError``, as in :class:`SmoothCache`).

    Example:
        >>> import smoothcache
        >>> caches = smoothcache.enable(pipe, {"transformer": high, "transformer_2": low})  # doctest: +SKIP
        >>> caches["transformer"].stats.by_key()                                          # doctest: +SKIP
    """
    models = denoisers(pipe)
    if not models:
        raise TargetError(
            f"{type(pipe).__name__} has no denoiser (transformer, transformer_2, unet...); "
            "use SmoothCache(model, ...) on the model itself"
        )
    plan = {name: None for name in models} if schedule is None else _per_denoiser(schedule, models, pipe)
    if _ACTIVE.get(pipe):
        logger.info("smoothcache.enable: replacing the caches already on %s", type(pipe).__name__)
        disable(pipe)
    caches: dict[str, SmoothCache] = {}
    try:
        for name, model in models.items():
            if schedule is None or plan[name] is not None:
                caches[name] = SmoothCache(model, plan[name], **kwargs).enable()
    except Exception:
        for cache in caches.values():
            cache.disable()
        raise
    if not caches:
        raise ValueError(f"the schedule mapping caches none of the denoisers {list(models)}")
    _ACTIVE.set(pipe, caches)
    return caches


def _models(target: Any) -> dict[str, nn.Module]:
    """The denoisers of a pipeline, or ``{"model": target}`` for a model."""
    return {"model": target} if isinstance(target, nn.Module) else denoisers(target)


def disable(pipe: Any) -> dict:
    """Restore every denoiser of ``pipe`` (a pipeline, or a model): the caches ``enable`` made, and any other
    smoothcache wrapping still on them (a cache or calibrator enabled by hand, even one you no longer hold,
    as when a notebook cell ``cache = SmoothCache(...); cache.enable()`` ran twice). Returns the caches by
    denoiser name (their stats stay readable).

    Safe to call twice, or on a pipeline never enabled (returns ``{}``).
    """
    caches = {} if isinstance(pipe, nn.Module) else dict(_ACTIVE.pop(pipe) or {})
    first_error: Exception | None = None
    left: list[tuple[str, Any]] = []
    for cache in caches.values():
        try:
            cache.disable()
        except Exception as err:  # restore the others, then report
            first_error = first_error or err
    for name, model in _models(pipe).items():
        for owner in owners_in(model):
            left.append((name, owner))
            try:
                owner.disable()
            except Exception as err:
                first_error = first_error or err
    if left:
        logger.info(
            "smoothcache.disable: released %s, which enable() had not made",
            ", ".join(f"a {type(owner).__name__} on {name}" for name, owner in left),
        )
        for name, owner in left:
            caches.setdefault(name, owner)
    if first_error is not None:
        raise first_error
    return caches


def _describe(name: str, model: nn.Module, cache: Any) -> list[str]:
    head = f"{name} ({type(model).__name__})"
    if cache is None:
        return [f"{head}: not cached"]
    state = "enabled" if cache.enabled else "disabled"
    if cache.calibrating:
        return [
            f"{head}: {state}, calibrating (one-line mode): the schedule comes after the first generation(s)"
        ]
    branches = cache.branches
    keys = list(dict.fromkeys(b.key for b in branches))
    lines = [f"{head}: {state}, {len(branches)} branch modules, keys {keys}"]
    fractions = cache.schedule.compute_fraction()
    shown = ", ".join(f"{k} {100 * f:.0f}%" for k, f in list(fractions.items())[:8])
    more = ", ..." if len(fractions) > 8 else ""
    lines.append(f"  {cache.schedule.num_steps}-step schedule, computed: {shown}{more}")
    stats = cache.stats
    if stats.computed + stats.predicted or stats.last_generation is not None:
        lines.extend("  " + line for line in str(stats).splitlines())
    else:
        lines.append("  no cached call yet")
    return lines


def _wrapping(name: str, model: nn.Module, owners: dict, of_pipeline: bool) -> list[str]:
    """Lines for the smoothcache objects wrapping ``model`` that ``enable`` did not make."""
    lines = []
    for owner, count in owners.items():
        if isinstance(owner, SmoothCache):
            lines.extend(_describe(name, model, owner))
        else:
            lines.append(f"{name} ({type(model).__name__}): {count} modules wrapped by {owner!r}")
        if of_pipeline:
            lines.append(
                f"  ({count} modules wrapped by a {type(owner).__name__} that smoothcache.enable did not "
                "make; smoothcache.disable(pipe) releases it)"
            )
    return lines


def summary(pipe: Any) -> str:
    """A short readable text: which denoisers of ``pipe`` (a pipeline, or a model) are cached, with which
    schedule, the counters so far and what the last generation did (with the reason when it skipped
    nothing); wrapping left by a cache ``enable`` did not make is shown too."""
    models = _models(pipe)
    active = {} if isinstance(pipe, nn.Module) else (_ACTIVE.get(pipe) or {})
    lines = []
    for name, model in models.items():
        cache = active.get(name)
        owners = {o: n for o, n in owners_in(model).items() if o is not cache}
        if cache is not None or not owners:
            lines.extend(_describe(name, model, cache))
        lines.extend(_wrapping(name, model, owners, not isinstance(pipe, nn.Module)))
    if not active and all(line.endswith(": not cached") for line in lines):
        names = ", ".join(models) or "none found"
        return f"smoothcache is not enabled on {type(pipe).__name__} (denoisers: {names})"
    return "\n".join([f"smoothcache on {type(pipe).__name__}:"] + lines)
