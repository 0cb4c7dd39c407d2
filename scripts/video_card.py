"""Render ``zoo/video/README.md``, the model card of the moving-digits video DiT, from its JSON records.

    python scripts/video_card.py [folder]     # rewrite the card from train_info.json + eval_results.json

Used by ``scripts/train_video.py`` after the evaluation; every figure in the card comes from
``train_info.json``, ``eval_results.json`` (the pipeline folder) and ``config.json`` of the evaluator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEATURES_CONFIG = ROOT / "src/smoothcache/zoo/video_features/config.json"
DEFAULT_FOLDER = ROOT / "src/smoothcache/zoo/video"

COLUMNS = (
    "fid",
    "precision",
    "recall",
    "class_consistency",
    "frame_accuracy",
    "motion_consistency",
    "motion_error",
)


def _row(label: str, r: dict, floor_fid: float) -> str:
    psnr = r.get("psnr_vs_reference")
    return (
        f"| {label} | **{r['fid']:.2f}** | {r['fid'] / floor_fid:.1f}x | {r['precision']:.3f} | "
        f"{r['recall']:.3f} "
        f"| {r['class_consistency']:.3f} | {r['frame_accuracy']:.3f} | {r['motion_consistency']:.3f} "
        f"| {r['motion_error']:.3f} | {'-' if psnr is None else f'{psnr:.1f}'} | {r['seconds']:.0f} s |"
    )


HEADER = (
    "| | FID | / floor | precision | recall | class consistency | frame accuracy | motion consistency "
    "| motion error (px) | PSNR vs 30 steps (dB) | time |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
)


def _verdict(ref: dict, few: dict) -> bool:
    """Fewer steps clearly worse: FID at least 1.25x and class consistency at least 5 points lower."""
    return few["fid"] >= 1.25 * ref["fid"] and few["class_consistency"] <= ref["class_consistency"] - 0.05


def _judge(ref: dict, few: dict) -> str:
    """One sentence on a fewer-steps row against the reference row."""
    figures = (
        f"FID {few['fid'] / ref['fid']:.2f}x, class consistency {few['class_consistency']:.1%} vs "
        f"{ref['class_consistency']:.1%}, motion error {few['motion_error']:.2f} vs "
        f"{ref['motion_error']:.2f} px"
        f", PSNR {few['psnr_vs_reference']:.1f} dB against the {ref['steps']}-step videos"
    )
    if _verdict(ref, few):
        return f"**{few['steps']} steps are clearly worse** ({figures})."
    return f"**{few['steps']} steps are NOT clearly worse** ({figures}): only a small loss."


def _curve(info: dict, rows: int = 12) -> list[str]:
    curve = info.get("loss_curve", [])
    if not curve:
        return []
    stride = max(1, len(curve) // rows)
    picked = curve[stride - 1 :: stride]
    if picked[-1] is not curve[-1]:
        picked.append(curve[-1])
    out = [
        "| iteration | minutes | training loss (MSE on the velocity, mean of the last "
        f"{curve[0]['iteration']} iterations) |",
        "|---|---|---|",
    ]
    out += [f"| {c['iteration']} | {c['minutes']:.1f} | {c['loss']:.4f} |" for c in picked]
    return out


def render_card(folder: Path) -> str:
    info = json.loads((folder / "train_info.json").read_text())
    res = json.loads((folder / "eval_results.json").read_text())
    feat = json.loads(FEATURES_CONFIG.read_text())
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 1e6
    floor = res["floor"]
    ref, guidance = res["reference_steps"], res["guidance"]
    runs = res["runs"]
    n, n_sweep = res["samples"], res.get("sweep_samples", res["samples"])
    seed0 = min(r["seed"] for r in runs)
    main = sorted(
        (r for r in runs if r["guidance"] == guidance and r["seed"] == seed0 and r.get("samples", n) == n),
        key=lambda r: -r["steps"],
    )
    sweep = sorted(
        (r for r in runs if r["steps"] == ref and r["seed"] == seed0 and r.get("samples", n) == n_sweep),
        key=lambda r: r["guidance"],
    )
    seeds = [r for r in runs if r["seed"] != seed0]
    by_steps = {r["steps"]: r for r in main}
    fewest = min(by_steps)
    worse = _verdict(by_steps[ref], by_steps[fewest])
    acc = feat["heldout_accuracy"]
    shuf, noise = feat["heldout_shuffled_frames"], feat["uniform_noise"]
    lines = [
        "# moving-digits-latte: a tiny class-conditional video DiT on moving scikit-learn digits",
        "",
        "A really trained, pixel-space, class-conditional video Diffusion Transformer (diffusers' Latte) "
        "shipped",
        "inside `smoothcache` as the offline video yardstick for SmoothCache, sampled with rectified flow",
        f"(`FlowMatchEulerDiscreteScheduler`, {ref} Euler steps) as Open-Sora is. It runs on CPU in seconds "
        "and",
        "needs no network. "
        + (
            f"Cutting the steps to {fewest} clearly costs quality (FID "
            f"{by_steps[fewest]['fid']:.1f} vs {by_steps[ref]['fid']:.1f} at {ref}; class "
            f"consistency {by_steps[fewest]['class_consistency']:.0%} vs "
            f"{by_steps[ref]['class_consistency']:.0%}), so a cache that skips computation has "
            "something to lose; milder cuts cost less (see the evaluation)."
            if worse
            else "Fewer steps are NOT clearly worse (see the evaluation), so read its caching "
            "results with care."
        ),
        "",
        f"It is a weak generator: at {ref} steps {by_steps[ref]['class_consistency']:.0%} of its videos "
        "show the "
        f"requested digit (real videos: {floor['class_consistency']:.0%}) and "
        f"{by_steps[ref]['motion_consistency']:.0%} move in a straight line within 0.5 px (real: "
        f"{floor['motion_consistency']:.0%}); FID {by_steps[ref]['fid']:.1f} against a real floor of "
        f"{floor['fid']:.2f}. The digits are grainy and change shape along the clip. It was trained for "
        "about an "
        "hour on a shared CPU; what it offers is a real trained video transformer whose outputs move when "
        "computation is skipped, not good samples.",
        "",
        "```python",
        "import torch",
        "from smoothcache import Schedule, SmoothCache",
        "from smoothcache.zoo import video_evaluator, video_pipeline",
        "from smoothcache.zoo.video_eval import save_gif",
        "pipe = video_pipeline()            # MovingDigitsPipeline.from_pretrained(<this folder>, "
        "local_files_only=True)",
        "labels = [i % 10 for i in range(100)]",
        f"frames = pipe(class_labels=labels, num_inference_steps={ref}, "
        "generator=torch.Generator().manual_seed(0),",
        '              output_type="pt").frames            # (100, 8, 1, 24, 24) in [0, 1]',
        "print(video_evaluator().evaluate(frames, labels))  # fid, class_consistency, motion_consistency, "
        "...",
        'save_gif("samples.gif", frames[:10])',
        "",
        'with SmoothCache(pipe.transformer, Schedule.fixed_interval(30, 2, ["attn1", "attn2", "ff"])):',
        f"    cached = pipe(class_labels=labels, num_inference_steps={ref}, "
        "generator=torch.Generator().manual_seed(0),",
        '                  output_type="pt").frames',
        "```",
        "",
        "`smoothcache demo --model video` calibrates, plans the recommended schedule, and writes the "
        "uncached and",
        "cached clips side by side as a GIF (`samples_side_by_side.gif`).",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        "| pipeline | `smoothcache.zoo.video_model.MovingDigitsPipeline` (a `DiffusionPipeline`: "
        "`transformer`, "
        "`class_embedder`, `scheduler`) |",
        "| transformer | diffusers `LatteTransformer3DModel`: alternating spatial and temporal "
        "`BasicTransformerBlock`s "
        '(`norm_type="ada_norm_single"`, PixArt-style adaLN-single) |',
        f"| blocks | {info['layers']} spatial (self-attention `attn1`, cross-attention `attn2` to the class "
        "tokens, `ff`) "
        f"+ {info['layers']} temporal (`attn1` over the 8 frames of each patch, `ff`) |",
        f"| width / heads | {info['hidden']} / {info['heads']} (head dim {info['hidden'] // info['heads']}), "
        "feed-forward 4x, GELU (tanh) |",
        f"| input / output | 1 x 8 x 24 x 24 pixels in [-1, 1]; patch {info['patch']} -> "
        f"{(24 // info['patch']) ** 2} tokens per frame, {8 * (24 // info['patch']) ** 2} per video |",
        "| conditioning | `VideoClassEmbedding`: class 0-9 (10 = null class for guidance) -> "
        f"{info['class_tokens']} "
        f"learned {info['caption_dim']}-d tokens, Latte's caption projection, cross-attention in the "
        "spatial blocks; "
        "timestep (= 1000 x noise level) through adaLN-single |",
        f"| parameters | {info['params'] / 1e6:.2f} M, float32 safetensors ({size_mb:.1f} MB in total) |",
        f"| scheduler | `FlowMatchEulerDiscreteScheduler` (rectified flow, Euler), shift {info['shift']}, "
        f"{ref} steps by default |",
        '| output | `.frames`: (B, F, C, H, W) tensor in [0, 1] for `output_type="pt"` (as diffusers\' video '
        'pipelines), (B, F, H, W, C) for `"np"`, lists of PIL images for `"pil"` |',
        "",
        "## Data",
        "",
        "Moving digits (`smoothcache.zoo.video_data`): one scikit-learn 8x8 digit (`load_digits`, bundled "
        "with",
        "scikit-learn, offline; values 0..16 scaled to [0, 1]) pasted on a black 24x24 canvas and moved for "
        "8 frames",
        "at a constant integer velocity drawn uniformly from the 24 pairs in {-2..2}^2 other than (0, 0), "
        "from a",
        "start corner drawn uniformly among those that keep the digit on the canvas for all 8 frames (no "
        "bounces:",
        "the paths are exact straight lines). The label is the digit's class. The digits are split exactly "
        "as the",
        f"image model's (stratified, seed {info['split_seed']}): {info['train_digits']} train digits, 300 "
        "held-out;",
        "the DiT and the evaluator networks only ever see videos of the train digits. Training draws a fresh",
        "deterministic batch every iteration (1497 digits x 24 velocities x up to 289 start corners).",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| iterations | {info['iterations']} (batch {info['batch_size']}, {info['videos_seen']} videos)"
        + (
            f" of {info['planned_iterations']} planned: the wall-clock budget ended the run; the cosine "
            "decay "
            "follows the larger of the iteration and time fractions, so it still completed"
            if info["stopped_early"]
            else ""
        )
        + " |",
        "| objective | rectified flow: `x_t = (1 - s) x0 + s noise`, MSE between the prediction and `noise "
        "- x0`, "
        f"noise level `s` {info['sigma_sampling']} (stratified), `timestep = 1000 s` |",
        "| optimiser | AdamW, betas (0.9, 0.99), weight decay "
        f"{info['weight_decay']}, grad-norm clip 1.0; output layer zero-initialised |",
        f"| learning rate | {info['lr']}, linear warmup {info['warmup']} iterations, cosine decay to "
        f"{info['lr'] * info['min_lr_frac']:.1e} |",
        f"| EMA | decay {info['ema']} (with the (1+n)/(10+n) warm-up); the EMA weights are shipped |",
        f"| label dropout | {int(info['label_dropout'] * 100)}% to the null class 10 (classifier-free "
        "guidance) |",
        f"| seed | {info['seed']} |",
        f"| wall time | **{info['wall_seconds'] / 60:.1f} min** ({info['seconds_per_iteration']:.2f} "
        "s/iteration) on "
        f"{info['machine']} |",
        "",
        *_curve(info),
        "",
        "## Evaluation",
        "",
        "The evaluator (`smoothcache.zoo.video_eval.VideoEvaluator`, networks in "
        "`smoothcache/zoo/video_features/`,",
        "trained on videos of the train digits only):",
        "",
        "- **FID**: Fréchet distance between Gaussians fitted to the 64-d penultimate features of a small "
        "3-D CNN "
        f"trained to name the digit and its velocity (held-out accuracy {acc['video_class_accuracy']:.1%} / "
        f"{acc['video_velocity_accuracy']:.1%}), against {feat['reference']['videos']} train videos; "
        "precision / "
        "recall (Kynkäänniemi et al., k = 3) on the same features. An FVD in miniature.",
        f"- **class consistency**: a per-frame CNN (held-out frame accuracy {acc['frame_accuracy']:.2%}) "
        "names each "
        "frame; a video's class is the argmax of its mean softmax; the score is the fraction of videos of "
        "the "
        "requested class. **Frame accuracy**: the fraction of single frames of the requested class.",
        "- **motion consistency**: the per-frame centre of mass (pixels above 0.2, in the brightest 10x10 "
        "window) is "
        "fitted by a constant-velocity line; the RMS distance to the line is the **motion error** (px); a "
        "video "
        "is consistent when it is below 0.5 px. Real videos score exactly 0 px; their frames shuffled score "
        f"{shuf['motion_error']:.2f} px (consistency {shuf['motion_consistency']:.2f}, FID "
        f"{shuf['fid']:.0f}); "
        f"uniform noise scores {noise['motion_error']:.2f} px, class consistency "
        f"{noise['class_consistency']:.2f}, "
        f"FID {noise['fid']:.0f}.",
        "- **PSNR** (`VideoEvaluator.psnr`): per-video PSNR against a reference run with the same seeds "
        f"(here the {ref}-step run; for caching, the uncached run).",
        "",
        f"### Sampling steps (guidance {guidance}, {n} videos, {n // 10} per class, same seeds)",
        "",
        *HEADER,
        *[_row(f"Euler, {r['steps']} steps", r, floor["fid"]) for r in main],
        f"| real held-out videos (floor, {feat['heldout_set']['videos']}) | **{floor['fid']:.2f}** | 1.0x "
        f"| {floor['precision']:.3f} | {floor['recall']:.3f} | {floor['class_consistency']:.3f} "
        f"| {floor['frame_accuracy']:.3f} | {floor['motion_consistency']:.3f} | {floor['motion_error']:.3f} "
        "| - | - |",
        "",
        "Verdict (clearly worse = FID at least 1.25x and class consistency at least 5 points lower):",
        "",
        *[f"- {_judge(by_steps[ref], r)}" for r in main if r["steps"] != ref],
        "",
        f"Motion consistency (the share of videos within {0.5} px of a straight path) is near zero for every "
        "setting: the model's digits wobble by about a pixel even at "
        f"{ref} steps, so this measure cannot separate the settings; the mean motion error (px) does.",
        "",
    ]
    if seeds:
        lines += [
            f"Seed check (another {n} videos, seed {seeds[0]['seed']}): "
            + ", ".join(
                f"{r['steps']} steps FID {r['fid']:.2f} (vs {by_steps[r['steps']]['fid']:.2f}), "
                f"class consistency {r['class_consistency']:.3f}, "
                f"motion consistency {r['motion_consistency']:.3f}"
                for r in seeds
                if r["steps"] in by_steps
            )
            + ".",
            "",
        ]
    lines += [
        f"The floor is {feat['heldout_set']['videos']} real held-out videos (other handwriting than the "
        "train "
        f"digits) against the train reference; the runs have {n} videos, so their Fréchet distances carry a "
        "slightly larger finite-sample bias. One seed per setting (generator seeds 0, 1, 2 for the batches "
        "of 100 "
        "labels): no seed-to-seed spread was measured"
        + ("" if seeds else " (`--seed-check` adds it)")
        + ". Times: "
        "wall clock of the whole pipeline call, 1 thread on a CPU heavily shared with other jobs "
        "(indicative only).",
        "",
        f"### Guidance sweep ({ref} steps, {n_sweep} videos, {n_sweep // 10} per class, same seeds)",
        "",
        *HEADER,
        *[_row(f"guidance {r['guidance']}", r, floor["fid"]) for r in sweep],
        "",
        f"Chosen: `VIDEO_GUIDANCE_SCALE = {float(guidance)}` (the lowest FID of the sweep"
        + (
            ", at its upper edge: larger scales were not tried)"
            if guidance == max(r["guidance"] for r in sweep)
            else ")"
        )
        + (
            ". Guidance 1.0 disables classifier-free guidance (one transformer pass per step); the null "
            "class is "
            "trained, so guided sampling works for experiments that need the doubled batch."
            if guidance == 1.0
            else "; guidance doubles the transformer batch (the null class 10 runs beside the requested one)."
        ),
        "",
        "## Reproduce",
        "",
        "```bash",
        "python scripts/train_video_features.py   # evaluator networks + reference_stats.npz (~15 min on a "
        "shared CPU)",
        "python scripts/train_video.py            # this folder + this card (training <= --max-minutes, "
        "then the "
        "evaluation)",
        "python scripts/video_card.py             # rewrite this card from the JSON records",
        "```",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_card(folder: Path) -> None:
    """Write ``folder/README.md``."""
    (folder / "README.md").write_text(render_card(folder))
    print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    write_card(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER)
