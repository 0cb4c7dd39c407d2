"""Comparisons at matched measured speed-up: each family's Pareto front, evaluated where another method sits.

A family's front keeps its points that no other point of the family beats on both measured speed-up and the
metric (PSNR, SSIM: higher is better; Digits-FID: lower is better). At a speed-up between two front points the
metric is interpolated linearly; below the family's slowest front point it is that point's value (a faster
point may always stand in for a slower one); above its fastest point the family cannot deliver it (NaN, "no
peer at this speed-up"). Using the front gives every family its best showing: a noisy or dominated point never
pulls a curve down.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["GRID", "best_within", "compare_points", "families", "front", "interpolate", "targets"]

#: Speed-ups at which the issue's target is checked.
GRID = (1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0)
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "fid": False}


def families(rows: dict, kind: str) -> list[str]:
    """Families of ``kind`` (``"smoothcache"``, ``"peer"``, ``"baseline"``) in ``rows``, in order of
    appearance."""
    return list(dict.fromkeys(r["family"] for r in rows.values() if r.get("kind") == kind))


def _points(rows: dict, family: str, metric: str) -> list[tuple[float, float]]:
    return [(r["measured"], r[metric]) for r in rows.values()
            if r["family"] == family and metric in r and math.isfinite(r[metric])]


def front(points: Iterable[tuple[float, float]], metric: str) -> list[tuple[float, float]]:
    """The non-dominated (speed-up, value) points, by increasing speed-up."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    pts = sorted(points, key=lambda p: (-p[0], -sign * p[1]))  # fastest first, best value first among ties
    kept, best = [], -math.inf
    for speed, value in pts:
        if sign * value > best:
            kept.append((speed, value))
            best = sign * value
    return kept[::-1]


def interpolate(curve: list[tuple[float, float]], speed: float) -> float:
    """The front's value at ``speed``: its first value below its range, NaN above it (or for an empty
    front)."""
    if not curve or speed > curve[-1][0] + 1e-9:
        return math.nan
    xs, ys = zip(*curve)
    return float(np.interp(speed, xs, ys))


def _curves(rows: dict, names: list[str], metric: str) -> dict[str, list[tuple[float, float]]]:
    return {f: front(_points(rows, f, metric), metric) for f in names}


def _best(values: dict[str, float], metric: str) -> tuple[str | None, float]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return None, math.nan
    pick = max if HIGHER_IS_BETTER[metric] else min
    name = pick(finite, key=finite.get)
    return name, finite[name]


def compare_points(rows: dict, metrics: tuple[str, ...] = ("psnr", "fid")) -> list[dict]:
    """For every smoothcache point: each peer family's value at its measured speed-up, the best peer, who
    wins.

    Returns one dict per point: ``name``, ``family``, ``speed``, and per metric ``{metric: {"ours", "peers":
    {family: value}, "best_peer", "best", "win"}}`` (``win`` is None when no peer covers that speed-up).
    """
    peers = families(rows, "peer")
    curves = {m: _curves(rows, peers, m) for m in metrics}
    out = []
    for name, r in rows.items():
        if r.get("kind") != "smoothcache" or "measured" not in r or "error" in r:
            continue
        entry = {"name": name, "family": r["family"], "speed": r["measured"]}
        for m in metrics:
            values = {f: interpolate(c, r["measured"]) for f, c in curves[m].items()}
            best_peer, best = _best(values, m)
            ours = r.get(m, math.nan)
            if best_peer is None or math.isnan(ours):
                win = None
            else:
                win = ours >= best if HIGHER_IS_BETTER[m] else ours <= best
            entry[m] = {"ours": ours, "peers": values, "best_peer": best_peer, "best": best, "win": win}
        out.append(entry)
    return sorted(out, key=lambda e: (e["family"], e["speed"]))


def _beats(ours: float, peer: float, better) -> bool | None:
    if math.isnan(ours) and math.isnan(peer):
        return None
    if math.isnan(ours) or math.isnan(peer):
        return math.isnan(peer)  # only one side reaches this speed-up
    return better(ours, peer)


def targets(rows: dict, grid: Iterable[float] = GRID, margin_db: float = 2.0) -> list[dict]:
    """Issue 10's target at each grid speed-up: the best smoothcache mode's PSNR at least ``margin_db`` above
    the best peer's, and its Digits-FID no worse (each side: the best of its families' fronts).

    ``met`` is None where neither side reaches the speed-up, False where only the peers do, True where only we
    do.
    """
    ours, peers = families(rows, "smoothcache"), families(rows, "peer")
    out = []
    for speed in grid:
        entry = {"speed": speed}
        for m in ("psnr", "fid"):
            mine = {f: interpolate(c, speed) for f, c in _curves(rows, ours, m).items()}
            theirs = {f: interpolate(c, speed) for f, c in _curves(rows, peers, m).items()}
            entry[m] = {"ours": _best(mine, m), "peer": _best(theirs, m)}
        psnr = _beats(entry["psnr"]["ours"][1], entry["psnr"]["peer"][1], lambda a, b: a - b >= margin_db)
        fid = _beats(entry["fid"]["ours"][1], entry["fid"]["peer"][1], lambda a, b: a <= b)
        entry["met"] = None if psnr is None and fid is None else bool(psnr) and bool(fid)
        out.append(entry)
    return out


def best_within(rows: dict, tolerance: float, kind: str = "smoothcache") -> tuple[str, dict] | None:
    """The fastest (measured) point of ``kind`` whose Digits-FID is within ``tolerance`` of no cache's."""
    limit = rows["no cache"]["fid"] * (1 + tolerance)
    ok = [
        (r["measured"], n)
        for n, r in rows.items()
        if r.get("kind") == kind and r.get("fid", math.inf) <= limit
    ]
    if not ok:
        return None
    _, name = max(ok)
    return name, rows[name]
