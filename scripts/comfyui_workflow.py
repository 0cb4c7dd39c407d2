"""SmoothCache Calibrate -> Apply through ComfyUI's own executor, headless on the CPU, on a tiny random Flux.

    COMFYUI_PATH=/path/to/ComfyUI PYTHONPATH=src python scripts/comfyui_workflow.py [--rounds 5] [--speedup 2]

What it does:

1. installs the SmoothCache nodes into a temporary ``custom_nodes`` folder with
   ``python -m smoothcache.comfyui install``'s code, and lets ComfyUI load them (``nodes.init_extra_nodes``);
2. registers three stand-in nodes of its own, because no real checkpoint or text encoder is available here:
   ``TinyFluxLoader`` (a Flux built with ComfyUI's classes, random weights: ComfyUI's Flux detection assumes
   the full-size model, so a tiny Flux file cannot go through UNETLoader), ``RandomConditioning`` (random text
   features) and ``LatentProbe`` (an output node that keeps the latent);
3. runs examples/comfyui/tiny_flux_calibrate_apply.json (API format) with ``execution.PromptExecutor``: first
   the calibration branch (SmoothCache Calibrate -> KSampler, which writes the profile; queued with a few
   seeds, whose runs add up), then, for each round and seed, the uncached KSampler, the SmoothCache Apply
   KSampler and a baseline, the uncached model with ``steps / speedup`` steps, interleaved (order rotating),
   the same seed for all three;
4. prints the measured speed-ups (medians over rounds of the uncached wall time of each prompt over the
   other's) and the fidelity: PSNR against the uncached latent, ``10 log10(range^2 / MSE)`` with ``range``
   the uncached latent's max - min.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfyui_headless import ComfyUnavailable, bootstrap, build, comfyui_version, conditioning  # noqa: E402

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "comfyui" / "tiny_flux_calibrate_apply.json"
#: a Flux small enough for the CPU, large enough that its blocks dominate a step: hidden 128, 2 + 4 blocks
TINY_FLUX = dict(hidden_size=128, num_heads=4, axes_dim=[8, 12, 12], depth=2, depth_single_blocks=4)
LATENTS: dict[str, torch.Tensor] = {}


class TinyFluxLoader:
    """Stands in for UNETLoader: a tiny Flux with random weights, built with ComfyUI's classes."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, seed):
        return (build("flux", seed=seed, **TINY_FLUX),)


class RandomConditioning:
    """Stands in for CLIPTextEncode: random text features and pooled vector of the tiny Flux's sizes."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 1, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, seed):
        return (conditioning("flux", seed=seed)[0],)


class LatentProbe:
    """An output node that keeps the latent it gets, by name."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "name": ("STRING", {"default": "latent"})}}

    RETURN_TYPES = ()
    FUNCTION = "keep"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def keep(self, samples, name):
        LATENTS[name] = samples["samples"].clone()
        return {"ui": {"text": [f"{name}: {tuple(samples['samples'].shape)}"]}}


class Server:
    """The little of ComfyUI's PromptServer that the executor uses."""

    client_id = last_node_id = last_prompt_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float(((x - reference) ** 2).mean())
    span = float(reference.max() - reference.min())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(span**2 / mse)).item()


def setup(workdir: Path):
    """Folders, the SmoothCache pack loaded by ComfyUI, the stand-in nodes; an executor."""
    import execution
    import folder_paths
    import nodes

    from smoothcache.comfyui.install import install

    (workdir / "comfyui" / "custom_nodes").mkdir(parents=True)
    pack = install(workdir / "comfyui")
    folder_paths.set_output_directory(str(workdir / "output"))
    folder_paths.set_temp_directory(str(workdir / "temp"))
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(pack.parents[1])], set())
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # comfy_extras modules needing uninstalled packages say so
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    logging.getLogger().setLevel(quiet)
    missing = [n for n in ("SmoothCacheCalibrate", "SmoothCacheApply") if n not in nodes.NODE_CLASS_MAPPINGS]
    if missing:
        raise RuntimeError(f"ComfyUI did not load {missing} from {pack}")
    nodes.NODE_CLASS_MAPPINGS.update(
        TinyFluxLoader=TinyFluxLoader, RandomConditioning=RandomConditioning, LatentProbe=LatentProbe
    )
    print(f"SmoothCache nodes loaded by ComfyUI from {pack}")
    return execution.PromptExecutor(Server(), cache_type=execution.CacheType.CLASSIC)


def run(executor, prompt: dict, outputs: list[str], prompt_id: str) -> float:
    """Validate and execute the ``outputs`` of ``prompt``; returns the wall seconds of the execution."""
    import execution

    valid, error, chosen, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, outputs))
    if not valid:
        raise RuntimeError(f"invalid prompt: {error} {node_errors}")
    start = time.perf_counter()
    executor.execute(prompt, prompt_id, extra_data={}, execute_outputs=chosen)
    seconds = time.perf_counter() - start
    if not executor.success:
        details = [d for e, d in executor.status_messages if e == "execution_error"]
        raise RuntimeError(f"prompt {prompt_id} failed: {details}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="seeds, each sampled uncached and cached")
    parser.add_argument("--speedup", type=float, default=2.0, help="SmoothCache Apply's speed-up")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    parser.add_argument("--calibration-runs", type=int, default=3, help="seeds the calibration runs on")
    args = parser.parse_args(argv)
    try:
        root = bootstrap()
    except ComfyUnavailable as err:
        parser.exit(2, f"error: {err}\n")
    torch.set_num_threads(args.threads)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  [log] %(message)s"))
    smoothcache_log = logging.getLogger("smoothcache.comfyui")
    smoothcache_log.addHandler(handler)
    smoothcache_log.setLevel(logging.INFO)
    smoothcache_log.propagate = False
    print(f"ComfyUI {comfyui_version()} at {root}; torch {torch.__version__}, {args.threads} thread(s)")
    prompt = json.loads(WORKFLOW.read_text())
    for node in ("6", "9", "11"):
        prompt[node]["inputs"]["steps"] = args.steps
    prompt["8"]["inputs"]["speedup"] = args.speedup
    prompt["13"]["inputs"]["steps"] = round(args.steps / args.speedup)
    with tempfile.TemporaryDirectory(prefix="smoothcache_comfyui_") as tmp:
        executor = setup(Path(tmp))
        for r in range(args.calibration_runs):
            prompt["6"]["inputs"]["seed"] = 100 + r
            seconds = run(executor, prompt, ["7"], f"calibrate-{r}")
            print(f"calibration prompt {r + 1} (Calibrate -> KSampler, {args.steps} steps): {seconds:.2f} s")
        run(executor, prompt, ["10", "12", "14"], "warm-up")  # loads and plans once, outside the timing
        names = {"uncached": "12", "smoothcache": "10", "fewer_steps": "14"}
        times = {name: [] for name in names}
        fidelity = {"smoothcache": [], "fewer_steps": []}
        for r in range(args.rounds):
            for node in ("9", "11", "13"):
                prompt[node]["inputs"]["seed"] = 1000 + r
            order = list(names)[r % 3 :] + list(names)[: r % 3]
            for name in order:
                times[name].append(run(executor, prompt, [names[name]], f"{name}-{r}"))
            for name, values in fidelity.items():
                values.append(psnr(LATENTS[name], LATENTS["uncached"]))
            print(f"seed {1000 + r}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in names))
    fewer = prompt["13"]["inputs"]["steps"]
    print(f"\nmedians of {args.rounds} interleaved rounds (same seeds), PSNR against the uncached latent:")
    print(f"  uncached, {args.steps} steps: {statistics.median(times['uncached']):.3f} s")
    for name, label in (
        ("smoothcache", f"SmoothCache Apply {args.speedup:g}x"),
        ("fewer_steps", f"{fewer} steps"),
    ):
        ratios = [u / c for u, c in zip(times["uncached"], times[name])]
        print(
            f"  {label}: {statistics.median(times[name]):.3f} s, measured speed-up "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x), "
            f"PSNR mean {statistics.mean(fidelity[name]):.1f} dB (min {min(fidelity[name]):.1f} dB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
