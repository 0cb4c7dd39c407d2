"""Render ``zoo/digits_flux/README.md``, the model card of the digits Flux, from its JSON records.

    python scripts/digits_flux_card.py [folder]   # rewrite the card from train_info.json + eval_results.json

Used by ``scripts/train_digits_flux.py``; every figure in the card comes from ``train_info.json``,
``eval_results.json`` (the pipeline folder) and ``config.json`` of the digits feature network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEATURES_CONFIG = ROOT / "src/smoothcache/zoo/digits_features/config.json"
DEFAULT_FOLDER = ROOT / "src/smoothcache/zoo/digits_flux"

HEADER = ("| | Digits-FID | Digits-FID (first 300) | / floor | precision | recall | class consistency "
          "| RMSE vs reference steps | nearest train image | time |",
          "|---|---|---|---|---|---|---|---|---|---|")


def _row(label: str, r: dict, floor_fid: float) -> str:
    fid_300 = r.get("fid_300", r["fid"])  # runs of 300 samples are their own first 300
    rmse = "-" if r.get("rmse_vs_reference") is None else f"{r['rmse_vs_reference']:.3f}"
    return (f"| {label} | **{r['fid']:.3f}** | {fid_300:.3f} | {fid_300 / floor_fid:.2f}x "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['class_consistency']:.3f} | {rmse} "
            f"| {r['nn_train_dist']:.2f} | {r['seconds']:.0f} s |")


def _curve(info: dict, rows: int = 12) -> list[str]:
    curve = info.get("loss_curve", [])
    if not curve:
        return []
    stride = max(1, len(curve) // rows)
    picked = curve[stride - 1::stride]
    if picked[-1] is not curve[-1]:
        picked.append(curve[-1])
    out = ["| iteration | minutes | training loss (MSE on the velocity, mean of the last "
           f"{curve[0]['iteration']} iterations) |", "|---|---|---|"]
    out += [f"| {c['iteration']} | {c['minutes']:.1f} | {c['loss']:.4f} |" for c in picked]
    return out


def _steps_section(res: dict, ref: int, guidance: float, floor: dict) -> list[str]:
    n = res["samples"]
    main = sorted((r for r in res["runs"] if r["guidance"] == guidance and r["samples"] == n),
                  key=lambda r: r["steps"])
    by_steps = {r["steps"]: r for r in main}
    lines = [
        f"### Euler steps at the chosen guidance {float(guidance)} ({n} samples, {n // 10} per class, "
        "same seeds)",
        "",
        *HEADER,
        *[_row(f"Euler, {r['steps']} steps", r, floor["fid"]) for r in main],
        f"| real held-out split (floor, 300 images) | - | **{floor['fid']:.3f}** | 1.00x "
        f"| {floor['precision']:.3f} | {floor['recall']:.3f} | - | - | {floor['nn_train_dist']:.2f} | - |",
        "",
    ]
    if n < 1000:
        lines += [f"{n} samples per row ({n // 10} per class) rather than 1,000, to keep the evaluation "
                  "within the time available on a shared two-core CPU. The Fréchet distance of 300 samples "
                  "is biased upwards and noisier than that of 1,000; compare rows of one table only.", ""]
    if ref in by_steps:
        fewest, most = min(by_steps), max(by_steps)
        ratio = by_steps[fewest]["fid"] / by_steps[ref]["fid"]
        lines += [
            f"Digits-FID ratio {fewest} steps / {ref} steps: **{ratio:.2f}x**"
            + (f"; {most} / {ref} steps: {by_steps[most]['fid'] / by_steps[ref]['fid']:.2f}x."
               if most > ref else "."),
            "",
            "Fewer steps against the reference (clearly worse = Digits-FID at least 1.25x or class "
            "consistency at least 5 points lower):",
            "",
            *[f"- {_judge(by_steps[ref], r)}" for r in main if r["steps"] < ref],
            "",
        ]
        nn = by_steps[ref]["nn_train_dist"]
        lines += [f"Memorisation check: the median distance from a {ref}-step sample to its nearest train "
                  f"image is {nn:.2f}, against {floor['nn_train_dist']:.2f} for the real held-out images"
                  + (": the samples are not copies of the train set." if nn >= 0.8 * floor["nn_train_dist"]
                     else ": the samples sit closer to the train set than unseen digits do (partial "
                     "memorisation)."), ""]
    return lines


def _clearly_worse(ref: dict, few: dict) -> bool:
    """Fewer steps clearly worse: Digits-FID at least 1.25x or class consistency at least 5 points lower."""
    return few["fid"] >= 1.25 * ref["fid"] or few["class_consistency"] <= ref["class_consistency"] - 0.05


def _judge(ref: dict, few: dict) -> str:
    """One sentence on a fewer-steps row against the reference row."""
    figures = (f"Digits-FID {few['fid'] / ref['fid']:.2f}x, class consistency "
               f"{few['class_consistency']:.1%} vs {ref['class_consistency']:.1%}, precision "
               f"{few['precision']:.3f} vs {ref['precision']:.3f}, recall {few['recall']:.3f} vs "
               f"{ref['recall']:.3f}")
    if "rmse_vs_reference" in few:
        figures += f", pixel RMSE {few['rmse_vs_reference']:.3f} against the {ref['steps']}-step samples"
    if _clearly_worse(ref, few):
        return f"**{few['steps']} steps are clearly worse** than {ref['steps']} ({figures})."
    return f"**{few['steps']} steps are NOT clearly worse** than {ref['steps']} ({figures})."


def _steps_limit(res: dict, ref: int, guidance: float) -> list[str]:
    """A limit bullet when the fewest steps are not clearly worse than the reference steps."""
    n = res["samples"]
    rows = {r["steps"]: r for r in res["runs"] if r["guidance"] == guidance and r["samples"] == n}
    if ref not in rows or min(rows) >= ref or _clearly_worse(rows[ref], rows[min(rows)]):
        return []
    few = rows[min(rows)]
    rmse = few.get("rmse_vs_reference", float("nan"))
    best = min(rows.values(), key=lambda r: r["fid"])["steps"]
    rising = "" if best == max(rows) else (
        f" Digits-FID is lowest at {best} steps and rises with more steps, likely the model's errors at low "
        "noise levels (which logit-normal training visits rarely) adding up over the finer steps.")
    return [
        "- Fewer Euler steps are not clearly worse on Digits-FID: the learned flow is nearly straight "
        f"({few['steps']}-step samples lie within a pixel RMSE of {rmse:.3f} of the "
        f"{ref}-step samples from the same noise); few steps trade recall (diversity, {few['recall']:.2f} vs "
        f"{rows[ref]['recall']:.2f}) for precision ({few['precision']:.2f} vs {rows[ref]['precision']:.2f}). "
        "For caching experiments on this model, judge fidelity to the uncached samples from the same noise "
        "(RMSE / PSNR) rather than Digits-FID alone." + rising,
    ]


def _header(info: dict, ref: int, size_mb: float) -> list[str]:
    return [
        "# digits-flux-16: a tiny class-conditional Flux transformer on scikit-learn's handwritten digits",
        "",
        "A really trained diffusers `FluxTransformer2DModel` (dual-stream + single-stream blocks, joint",
        "attention, rotary positions, AdaLN modulation from the timestep and a pooled vector) in pixel",
        "space, shipped inside `smoothcache` as the offline Flux-style yardstick for SmoothCache. A",
        "random-weight tiny Flux makes no images, so nothing tells whether skipping computation hurt; this",
        "one was trained, so its samples can be scored (Digits-FID, class consistency) and compared with",
        f"uncached ones. It samples 16x16 digits with rectified flow ({ref} Euler steps by default, as",
        "FluxPipeline) on CPU in seconds and needs no network.",
        "",
        "```python",
        "import torch",
        "from smoothcache.zoo import DIGITS_FLUX_GUIDANCE_SCALE, digits_evaluator, digits_flux_pipeline",
        "pipe = digits_flux_pipeline()  # DigitsFluxPipeline.from_pretrained(<this folder>, "
        "local_files_only=True)",
        "labels = [i % 10 for i in range(100)]",
        f"images = pipe(class_labels=labels, num_inference_steps={ref},",
        "              guidance_scale=DIGITS_FLUX_GUIDANCE_SCALE, "
        "generator=torch.Generator().manual_seed(0),",
        "              output_type=\"pt\").images  # (N, 1, 16, 16) in [0, 1]",
        "print(digits_evaluator().evaluate(images, labels))  # fid, precision, recall, class_consistency",
        "```",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        "| pipeline | `smoothcache.zoo.digits_flux_model.DigitsFluxPipeline` (a `DiffusionPipeline`: "
        "`transformer`, `class_embedder`, `scheduler`; output `.images` as `DiTPipeline`) |",
        "| transformer | diffusers `FluxTransformer2DModel`: 4 double-stream (`FluxTransformerBlock`) + 8 "
        "single-stream (`FluxSingleTransformerBlock`) blocks, width 64 = 4 heads x 16, "
        "`axes_dims_rope=[4, 6, 6]`, `guidance_embeds=False` |",
        "| input / output | 1 x 16 x 16 pixels in [-1, 1], `patch_size=1`, `in_channels=1`: 256 image tokens "
        "of one channel; `img_ids` the 16 x 16 grid (as `FluxPipeline._prepare_latent_image_ids`), "
        "`txt_ids` zeros |",
        "| conditioning | `FluxClassEmbedding`: class 0-9 (10 = null class for guidance) -> 32 learned text "
        "tokens of width 32 (`encoder_hidden_states`, `joint_attention_dim=32`) and a learned pooled vector "
        "of width 32 (`pooled_projections`, added to the timestep embedding of the AdaLN modulation) |",
        "| call | as FluxPipeline: `transformer(hidden_states, encoder_hidden_states, pooled_projections, "
        "timestep=sigma, img_ids, txt_ids, return_dict=False)`, sigma in [0, 1] (FluxPipeline passes "
        "t / 1000) |",
        f"| parameters | {info['params'] / 1e6:.2f} M, float32 safetensors ({size_mb:.1f} MB in total) |",
        f"| scheduler | `FlowMatchEulerDiscreteScheduler`, shift {info['shift']}, sigmas "
        f"`linspace(1, 1/N, N)` (as FluxPipeline), {ref} steps by default |",
        "| guidance | classifier-free; > 1 batches the class and the null class in one transformer call per "
        "step (as `DiTPipeline`), 1.0 runs only the class |",
        "",
        "## Data",
        "",
        "`sklearn.datasets.load_digits()` (1,797 8x8 images, 10 classes, bundled with scikit-learn, "
        "offline),",
        "upsampled to 16x16 (bilinear) and scaled to [-1, 1], exactly as for the digits DiT (`zoo/digits`):",
        "deterministic stratified split (`smoothcache.zoo.digits_data.digits_split`, seed "
        f"{info['split_seed']}), {info['train_images']} train / 300 held-out images; the model and the",
        "evaluator's feature network saw the train split only. No augmentation.",
        "",
    ]


def _training(info: dict) -> list[str]:
    curve = info.get("loss_curve", [])
    last = f"{curve[-1]['loss']:.4f} (mean of the last {curve[0]['iteration']} iterations)" if curve else "-"
    sigma = (f"logit-normal (mean {info['sigma_mean']}, std {info['sigma_std']}, as SD3)"
             if info["sigma_sampling"] == "logit-normal" else "uniform (stratified)")
    return [
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| iterations | {info['iterations']} (batch {info['batch_size']}, about {info['epochs']:g} epochs)"
        + (f" of {info['planned_iterations']} planned: the wall-clock budget (`--max-minutes`) ended the "
           "run; "
           "the cosine decay follows the larger of the iteration and time fractions, so it still completed"
           if info["stopped_early"] else "") + " |",
        "| objective | rectified flow: `x_t = (1 - s) x0 + s noise`, MSE between the prediction and "
        f"`noise - x0`; noise level `s` {sigma}, then shifted by {info['shift']} (the scheduler's shift) |",
        "| initialisation | adaLN-Zero (DiT): the modulation layers of every block and of the output norm, "
        "and the output projection, start at zero |",
        f"| optimiser | AdamW, betas (0.9, 0.99), weight decay {info['weight_decay']}, grad-norm clip 1.0 |",
        f"| learning rate | {info['lr']}, linear warmup {info['warmup']} iterations, cosine decay to "
        f"{info['lr'] * info['min_lr_frac']:.1e} |",
        f"| EMA | decay {info['ema']} (with the (1+n)/(10+n) warm-up); the EMA weights are shipped |",
        f"| label dropout | {int(info['label_dropout'] * 100)}% to the null class 10 (classifier-free "
        "guidance) |",
        f"| seed | {info['seed']} |",
        f"| wall time | **{info['wall_seconds'] / 60:.1f} min** ({info['seconds_per_iteration']:.2f} "
        f"s/iteration) on {info['machine']} |",
        f"| final training loss | {last}, the raw weights |",
        "",
        *_curve(info),
        "",
    ]


def render_card(folder: Path) -> str:
    info = json.loads((folder / "train_info.json").read_text())
    res = json.loads((folder / "eval_results.json").read_text())
    feat = json.loads(FEATURES_CONFIG.read_text())
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 1e6
    floor, ref, guidance = res["floor"], res["reference_steps"], res["guidance"]
    n_sweep = res["sweep_samples"]
    sweep = sorted((r for r in res["runs"] if r["steps"] == ref and r["samples"] == n_sweep),
                   key=lambda r: r["guidance"])
    best = min(sweep, key=lambda r: r["fid"]) if sweep else None
    if best is not None and guidance == best["guidance"]:
        chosen = " (the lowest Digits-FID of the sweep" + (
            ", at its upper edge: larger scales were not tried)."
            if guidance == sweep[-1]["guidance"] else ").")
    else:
        chosen = " (set by hand)."
    if guidance == 1.0:
        chosen += (" Guidance 1.0 disables classifier-free guidance (one transformer pass per step); "
                   "the null "
                   "class is trained, so guided sampling works for experiments that need the doubled batch.")
    else:
        chosen += (" Guidance doubles the transformer batch: the null class runs beside the requested one in "
                   "the same call.")
    lines = [
        *_header(info, ref, size_mb),
        *_training(info),
        "## Evaluation",
        "",
        "The digits evaluator shared with the digits DiT (`smoothcache.zoo.digits_evaluator()`):",
        "Digits-FID is the Fréchet distance between Gaussians fitted to the 64-d penultimate features of the",
        "small digits CNN in `smoothcache/zoo/digits_features/` (held-out accuracy "
        f"{feat['heldout_accuracy']:.2%}) against",
        "the train split; precision / recall (Kynkäänniemi et al., k = 3) on the same features; class",
        "consistency is the fraction of samples that the CNN classifies as the requested class. RMSE vs",
        f"reference steps: pixel RMSE (range [0, 1]) between a run's samples and the {ref}-step samples",
        "from the same initial noise. Nearest train image: median L2 distance (range [-1, 1]) from a sample",
        "to its nearest train image (memorisation check; the real held-out images' figure is in the floor",
        "row).",
        "",
        *_steps_section(res, ref, guidance, floor),
        "The floor is the Fréchet distance of the 300 real held-out images to the train reference. FD is",
        "biased upwards on small sample sets, so `/ floor` compares the first 300 samples (30 per class) of",
        "each run with it. Times: wall clock of the whole pipeline call, batches of 250 labels, 2 threads",
        "on a CPU shared with other jobs, at times heavily: indicative only.",
        "",
        f"### Guidance sweep ({ref} Euler steps, {n_sweep} samples, {n_sweep // 10} per class, same seeds)",
        "",
        *HEADER,
        *[_row(f"guidance {r['guidance']}", r, floor["fid"]) for r in sweep],
        "",
        f"Chosen: `DIGITS_FLUX_GUIDANCE_SCALE = {float(guidance)}`{chosen}",
        "",
        "## Limits",
        "",
        "- Tiny and briefly trained (about three quarters of an hour on a shared two-core CPU): the samples",
        "  are digits, not good handwriting. Compare figures within this card (or one benchmark) only.",
        "- 16 x 16 grayscale pixels, one token per pixel: no VAE, no text encoder. The class embedder stands",
        "  in for T5 / CLIP: its 32 tokens and pooled vector are learned per class, not computed from a",
        "  prompt.",
        "- The scheduler uses a fixed shift; FluxPipeline's resolution-dependent shift",
        "  (`use_dynamic_shifting`) and Flux-dev's guidance embedding (`guidance_embeds`) are not used.",
        "- One seed per setting; the seed-to-seed spread of the Fréchet distance was not measured here.",
        *_steps_limit(res, ref, guidance),
        "",
        "## Reproduce",
        "",
        "```bash",
        "python scripts/train_digits_flux.py              # this folder + this card (training, evaluation)",
        "python scripts/train_digits_flux.py --eval-only  # re-evaluate the folder (reuses finished rows)",
        "python scripts/digits_flux_card.py               # rewrite this card from the JSON records",
        "```",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_card(folder: Path) -> None:
    """Write ``folder/README.md`` (nothing to write before the evaluation)."""
    if not (folder / "eval_results.json").is_file():
        print(f"{folder} has no eval_results.json yet: the model card is written after the evaluation")
        return
    (folder / "README.md").write_text(render_card(folder))
    print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    write_card(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER)
