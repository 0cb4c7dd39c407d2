"""Cache memory, planned against measured speed-up, and fidelity at equal measured speed-up (issue 17).

For the digits, audio and video DiTs trained here, the trained tiny Flux (``digits_flux``: 4 double + 8 single
blocks, 28 Euler steps) and tiny random-weight Flux-, SD3- and HunyuanVideo-shaped models
(``bench/dualstream.py``), each calibrated once, budgets 1.5x to 3x are planned in
wall time (``cost="time"``, the default) and applied three ways: branch-level skipping
(``fuse_blocks=False``), each block fused on its own (``"blocks"``) and runs of blocks fused as one
(``"runs"``, the default); the runs are also planned in MACs (``cost="macs"``). diffusers' TaylorSeer runs on
the same branches. Per method: the bytes the cache keeps (smoothcache's own count, and every live tensor
counted by :mod:`bench.memory_probe`), planned and measured (interleaved) speed-up, and fidelity to the
uncached output of the same seeds; then each family's fidelity interpolated at equal measured speed-ups.
FLUX.1-dev's cache bytes come from its real shape on the meta device.

    python -m bench.memory                          # everything (about an hour on 2 cores)
    python -m bench.memory --model flux sd3 --rounds 1 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from smoothcache import MacReport, Schedule, ScheduleError, SmoothCache
from smoothcache.fidelity import measure, psnr

from .common import RESULTS, machine, write_section
from .memory_probe import FLUX_DEV, LiveTensors, flux_dev_bytes
from .methods import Method
from .quality import time_methods

ZOO = ("digits", "audio", "video")
DUAL = ("flux", "sd3", "hunyuan_video")
TRAINED_FLUX = "digits_flux"
SPEEDUPS = (1.5, 2.0, 2.5, 3.0)
#: (family, fuse_blocks, cost) of our methods
OURS = (("branch-level", False, "time"), ("fused blocks", "blocks", "time"), ("fused runs", "runs", "time"),
        ("fused runs, planned in MACs", "runs", "macs"))
MATCHED = (1.5, 2.0, 2.5)


class Subject:
    """One model: how it generates, its calibration, and the size of one hidden state (for reading bytes)."""

    def __init__(self, name: str, batch: int):
        self.name, self.batch = name, batch
        if name in ZOO:
            from .modality import Bench

            # calibrated at the batch the methods run: a plan in time holds for the batch it was timed at;
            # the audio model's SDE sampler gets three noise draws, as in the one-line mode
            self.bench = Bench(name, calibration_runs=3 if name == "audio" else 1, calibration_batch=batch)
            self.model, self.steps = self.bench.pipe.transformer, self.bench.steps
            self.profile = self.bench.profile
            self.figure = "lsd_db" if name == "audio" else "psnr_db"
        else:
            from smoothcache import Calibrator

            if name == TRAINED_FLUX:
                from smoothcache.zoo import digits_flux_pipeline

                self.pipe = digits_flux_pipeline()
                self.pipe.set_progress_bar_config(disable=True)
                self.model = self.pipe.transformer
            else:
                from .dualstream import build

                self.spec, self.model = build(name)
            self.steps = 28
            with Calibrator(self.model) as cal:
                self._run(seed=1000)
                cal.reset()
            self.profile = cal.profile
            self.figure = "psnr_db"
        self.report = MacReport.from_profile(self.profile)
        self.keys = self.profile.keys

    def _run(self, seed: int) -> torch.Tensor:
        from .dualstream import generate

        if self.name == TRAINED_FLUX:
            labels = [i % 10 for i in range(self.batch)]
            generator = torch.Generator().manual_seed(seed)
            return self.pipe(class_labels=labels, num_inference_steps=self.steps, generator=generator,
                             output_type="pt").images

        return generate(self.spec, self.model, self.steps, seed=seed, batch=self.batch)

    def generate(self, pipe, method: Method, labels, seed: int) -> torch.Tensor:
        if self.name in ZOO:
            return self.bench.generate(self.bench.pipe, method, list(labels)[: self.batch], seed)
        with method.context():
            return self._run(seed)

    def fidelity(self, reference: torch.Tensor, out: torch.Tensor) -> dict:
        if self.name in ZOO:
            return {
                k: float(v) for k, v in measure(_wrap(self.name, reference), _wrap(self.name, out)).items()
            }
        flat = (reference.reshape(reference.shape[0], 1, -1, 1), out.reshape(out.shape[0], 1, -1, 1))
        span = float(reference.max() - reference.min())
        return {"psnr_db": psnr(*flat, data_range=span)}

    def hidden_state_bytes(self) -> int:
        """Bytes of the largest tensor the first block receives in one uncached call (the image stream's
        hidden state, CFG batch included): the unit the tables count in."""
        from smoothcache.targets import find_branches

        block = self.model.get_submodule(find_branches(self.model)[0].block_path)
        seen = []

        def hook(module, args, kwargs):
            tensors = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
            seen.append(max(t.numel() * t.element_size() for t in tensors))

        handle = block.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.generate(None, Method("probe", "", "", self.steps, 1.0), range(self.batch), 0)
        finally:
            handle.remove()
        return max(seen)


def _wrap(name: str, x: torch.Tensor):
    from types import SimpleNamespace

    return SimpleNamespace(**{{"digits": "images", "audio": "audios", "video": "frames"}[name]: x})


def build_methods(s: Subject) -> tuple[list[Method], dict[str, str]]:
    """No cache first, then ours at every budget and fusion mode, then TaylorSeer; ``{name: why}`` left
    out."""
    methods, skipped = [Method("no cache", "no cache", "reference", s.steps, 1.0)], {}
    for speedup in SPEEDUPS:
        for family, fuse, cost in OURS:
            name = f"{family} {speedup:g}x"
            try:
                schedule = Schedule.for_budget(
                    s.profile, speedup=speedup, cost=cost, fuse_blocks=fuse is not False
                )
            except ScheduleError as err:
                skipped[name] = str(err).split(";")[0]
                continue
            info = {
                "target": speedup,
                "cost": cost,
                "fuse_blocks": fuse,
                "planned_time": s.report.speedup(schedule, "time", fuse is not False)
                if s.report.has("time")
                else None,
                "planned_macs": s.report.speedup(schedule, "macs", fuse is not False),
                "planned_error": schedule.metadata.get("planned_error"),
            }
            method = Method(name, family, "smoothcache", s.steps, info["planned_macs"], info=info)
            method.context = lambda m=method, sch=schedule, f=fuse: _ours(s, m, sch, f)
            methods.append(method)
    for interval in (2, 3):
        methods.append(_taylorseer(s, interval))
    if s.name == "digits":  # cache-dit's adapter covers DiTPipeline, not the other subjects
        from . import cachedit

        if cachedit.available():
            for family, threshold in (("DBCache", 0.12), ("DBCache+TaylorSeer", 0.2)):
                methods.append(_cachedit(s, family, threshold))
        else:
            skipped["cache-dit"] = "cache-dit is not installed (pip install cache-dit==1.5.3 torch==2.13.0)"
    return methods, skipped


def _cachedit(s: Subject, family: str, threshold: float) -> Method:
    from diffusers import DiTPipeline

    from .cachedit import cachedit_methods

    # cache-dit recognises pipelines by class: a DiTPipeline sharing the digits pipeline's modules (its
    # patches reach the shared transformer and DiTPipeline.__call__, which the digits pipeline's call runs)
    view = DiTPipeline(**s.bench.pipe.components)
    (peer,) = cachedit_methods(view, s.steps, families=[family], thresholds=[threshold]).values()
    return Method(peer.name, f"cache-dit {family}", "peer", s.steps, float("nan"), peer.apply,
                  {"config": peer.config})


def _ours(s: Subject, method: Method, schedule: Schedule, fuse) -> SmoothCache:
    cache = SmoothCache(s.model, schedule, fuse_blocks=fuse)
    method.info["live"] = cache
    return cache


def _taylorseer(s: Subject, interval: int) -> Method:
    import re
    from types import SimpleNamespace

    from smoothcache.targets import find_branches

    from .modality import taylorseer

    identifiers = [re.escape(b.path) for b in find_branches(s.model)]
    warmup = max(1, round(3 * s.steps / 50))
    config = {"cache_interval": interval, "disable_cache_before_step": warmup, "max_order": 1}
    pipe = s.bench.pipe if s.name in ZOO else SimpleNamespace(transformer=s.model)

    def apply():
        return taylorseer(pipe, config, identifiers)

    return Method(
        f"TaylorSeer N={interval}",
        "diffusers TaylorSeer",
        "peer",
        s.steps,
        float("nan"),
        apply,
        {"config": config},
    )


def memory(s: Subject, methods: list[Method]) -> dict[str, dict]:
    """Per method, the bytes its cache keeps over one generation (batch ``s.batch``)."""
    out, base = {}, None
    for m in methods:
        probe = LiveTensors(s.model)
        with probe:
            s.generate(None, m, range(s.batch), 0)
        cache = m.info.pop("live", None)
        row = {"live_bytes": probe.peak}
        if cache is not None:
            st = cache.stats
            row.update(
                cache_bytes=st.peak_bytes,
                by_kind=st.bytes_by_kind,
                fused_blocks=st.fused_blocks,
                runs=st.runs,
            )
        base = probe.peak if base is None else base
        row["measured_bytes"] = max(0, probe.peak - base)
        out[m.name] = row
    return out


def matched(rows: dict, figure: str) -> dict[str, dict[str, float]]:
    """Each family's fidelity at equal measured speed-ups, interpolated along its budget sweep."""
    families: dict[str, list[tuple[float, float]]] = {}
    for r in rows.values():
        if r["family"] != "no cache" and figure in r:
            families.setdefault(r["family"], []).append((r["measured"], r[figure]))
    out = {}
    for family, points in families.items():
        points.sort()
        xs, ys = zip(*points)
        out[family] = {f"{x:g}x": float(np.interp(x, xs, ys)) for x in MATCHED if xs[0] <= x <= xs[-1]}
    return out


def run_subject(name: str, args, say) -> dict:
    started = time.perf_counter()
    s = Subject(name, args.batch)
    methods, skipped = build_methods(s)
    say(f"{len(methods)} methods; left out {len(skipped)}")
    mem = memory(s, methods)
    say("memory measured")
    _, speedups = time_methods(None, methods, s.batch, args.rounds, say, generate=s.generate)
    rows, reference = {}, None
    for m in methods:
        out = torch.cat([s.generate(None, m, range(s.batch), seed) for seed in range(args.seeds)])
        reference = out if reference is None else reference
        m.info.pop("live", None)  # (the cache object of the last generation: not a result)
        row = {**m.row(speedups), **mem[m.name]}
        if m is not methods[0]:
            row.update(s.fidelity(reference, out))
        rows[m.name] = row
    return {
        "steps": s.steps,
        "batch": s.batch,
        "seeds": args.seeds,
        "rounds": args.rounds,
        "figure": s.figure,
        "hidden_state_bytes": s.hidden_state_bytes(),
        "methods": rows,
        "skipped": skipped,
        "matched": matched(rows, s.figure),
        "machine": machine(),
        "minutes": (time.perf_counter() - started) / 60,
    }


def flux_dev() -> dict:
    """FLUX.1-dev's cache bytes at its real shape (meta device), every-other-step whole-step skips."""
    from smoothcache.targets import find_branches

    def ours(fuse):
        def make(model):
            keys = sorted({b.key for b in find_branches(model)})
            schedule = Schedule.fixed_interval(FLUX_DEV["steps"], 2, keys, predictor="linear")
            return SmoothCache(model, schedule, fuse_blocks=fuse, calls_per_step=1)

        return make

    import contextlib

    res = flux_dev_bytes(
        {
            "no cache": lambda model: contextlib.nullcontext(),
            "branch-level": ours(False),
            "fused blocks": ours("blocks"),
            "fused runs": ours("runs"),
        }
    )
    f = FLUX_DEV
    unit = (f["image_tokens"] + f["text_tokens"]) * f["hidden"] * 2
    return {"results": res, "image_plus_text_state_bytes": unit}


def report(results: dict) -> str:
    lines = [
        "## Cache memory and the speed-up promise (`bench/memory.py`)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
    ]
    for name, res in results.get("models", {}).items():
        fig = res["figure"]
        lines += [
            f"### {name}: {res['steps']} steps, batch {res['batch']}",
            "",
            "| method | cache (MiB) | in image hidden states | live tensors (MiB) | planned (time) | "
            f"planned (MACs) | measured | {fig} |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m, r in res["methods"].items():
            cache = r.get("cache_bytes")
            kept = cache if cache is not None else r["measured_bytes"]
            lines.append(
                f"| {m} | {'-' if cache is None else format(cache / 2**20, '.2f')} | "
                f"{kept / res['hidden_state_bytes']:.1f} | "
                f"{r['measured_bytes'] / 2**20:.2f} | "
                f"{'-' if r.get('planned_time') is None else format(r['planned_time'], '.2f') + 'x'} | "
                f"{'-' if r.get('planned_macs') is None else format(r['planned_macs'], '.2f') + 'x'} | "
                f"{r['measured']:.2f}x | {'-' if fig not in r else format(r[fig], '.2f')} |"
            )
        lines += [
            "",
            f"{fig} at equal measured speed-up: "
            + "; ".join(
                f"{fam}: " + ", ".join(f"{k} {v:.2f}" for k, v in vals.items())
                for fam, vals in res["matched"].items()
                if vals  # a family with one point, or none in range, has nothing to interpolate
            ),
            "",
        ]
        if res.get("skipped"):
            reach = r"allow is [0-9.]+ \(speed-up ([0-9.]+x)\)"
            best = {m: re.search(reach, why) for m, why in res["skipped"].items()}
            lines += [
                "Out of reach in these tables (best reachable): "
                + "; ".join(f"{m} ({b.group(1) if b else res['skipped'][m]})" for m, b in best.items()),
                "",
            ]
    if "flux_dev" in results:
        fd = results["flux_dev"]
        unit = fd["image_plus_text_state_bytes"]
        lines += [
            "### FLUX.1-dev at its real shape (meta device, bf16, batch 1, 1024x1024, 28 steps)",
            "",
            "| method | cache | in image+text hidden states |",
            "| --- | --- | --- |",
        ]
        for m, r in fd["results"].items():
            lines.append(f"| {m} | {r['bytes'] / 2**30:.2f} GiB | {r['bytes'] / unit:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [*ZOO, TRAINED_FLUX, *DUAL]
    parser.add_argument("--model", nargs="+", default=names, choices=names)
    parser.add_argument("--batch", type=int, default=4, help="samples per generation")
    parser.add_argument(
        "--seeds", type=int, default=3, help="generations per method for the fidelity figures"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out / "memory.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("models", {})
    results["flux_dev"] = flux_dev()
    for name in args.model:
        results["models"][name] = run_subject(
            name, args, lambda line, n=name: print(f"[{n}] {line}", flush=True)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
    extra = {} if args.out == RESULTS else {"benchmarks": args.out / "BENCHMARKS.md"}  # smoke runs
    write_section("memory", report(results), results, results_dir=args.out, **extra)


if __name__ == "__main__":
    main()
