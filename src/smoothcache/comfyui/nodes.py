"""The two SmoothCache nodes, in ComfyUI's classic node interface (``INPUT_TYPES``, ``FUNCTION``...).

- **SmoothCache Calibrate** (MODEL -> MODEL): every sampler run of the returned model computes every block
  and records its forecast errors; at the end of the run the profile is written (runs over the same sigmas
  add up) and its path is logged and shown on the node.
- **SmoothCache Apply** (MODEL -> MODEL): skips blocks on the steps a profile plans for ``speedup`` (planned
  for each run's sigmas), or on a schedule file's 0 steps; with no file, the first run calibrates and the
  next ones cache.

Relative paths are under ComfyUI's output folder (the same text in both nodes names the same file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .families import find_blocks
from .patch import SmoothCacheSetup, patch_model
from .plans import PlanSource

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "SmoothCacheApply", "SmoothCacheCalibrate"]

CATEGORY = "advanced/model/smoothcache"
DEFAULT_PROFILE = "smoothcache/profile.safetensors"


def resolve_path(text: str) -> Path:
    """The file a node's path input names: absolute, or relative to ComfyUI's output folder (to the working
    directory where ComfyUI is not running)."""
    path = Path(text.strip()).expanduser()
    if path.is_absolute():
        return path
    try:
        import folder_paths
    except ImportError:
        return Path.cwd() / path
    return Path(folder_paths.get_output_directory()) / path


class SmoothCacheCalibrate:
    """MODEL -> MODEL: the next sampler runs record SmoothCache's error tables and write a profile."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "profile_path": (
                    "STRING",
                    {
                        "default": DEFAULT_PROFILE,
                        "tooltip": "where each sampler run writes the profile (.safetensors); relative to "
                        "ComfyUI's output folder",
                    },
                ),
                "lookahead": (
                    "INT",
                    {
                        "default": 3,
                        "min": 1,
                        "max": 8,
                        "tooltip": "the longest run of skipped steps to measure",
                    },
                ),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "calibrate"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Sample with the returned model as usual: each sampler run computes every block, records how well a "
        "cached or forecast block output would have served each step, and writes the profile for SmoothCache "
        "Apply. Runs over the same sigmas add up."
    )

    def calibrate(self, model, profile_path: str, lookahead: int, unique_id: str | None = None) -> dict:
        blocks = find_blocks(model.get_model_object("diffusion_model"))
        if not profile_path.strip():
            raise ValueError(
                "SmoothCache Calibrate needs a profile path to write (e.g. " + DEFAULT_PROFILE + ")"
            )
        path = resolve_path(profile_path)
        setup = SmoothCacheSetup(blocks, profile_path=path, lookahead=lookahead, node_id=unique_id)
        text = f"SmoothCache calibrates {blocks.model} ({len(blocks.blocks())} blocks); profile: {path}"
        return {"ui": {"text": [text]}, "result": (patch_model(model, setup),)}


class SmoothCacheApply:
    """MODEL -> MODEL: skip blocks on the steps a calibration profile plans for a speed-up."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "speedup": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 1.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "the speed-up to plan for (in the time the calibration measured)",
                    },
                ),
                "profile": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "a profile (.safetensors) from SmoothCache Calibrate, or a schedule "
                        "(.json); empty: the first sampler run calibrates and the next ones cache",
                    },
                ),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Skips transformer blocks on the steps where a calibration says their output can be forecast: a "
        "skipped block returns its input plus its predicted residual. Any step count and sampler segment is "
        "planned from the profile by sigma."
    )

    def apply(self, model, speedup: float, profile: str, unique_id: str | None = None) -> dict:
        blocks = find_blocks(model.get_model_object("diffusion_model"))
        path = resolve_path(profile) if profile.strip() else None
        source = PlanSource(float(speedup), path, blocks)
        if path is None:
            text = f"SmoothCache {speedup:g}x: the first sampler run calibrates, the next ones cache"
        elif source.refresh():  # read now so that a bad file fails here
            text = f"SmoothCache {speedup:g}x from {path}"
        else:
            text = f"SmoothCache {speedup:g}x from {path} (not written yet: read when sampling starts)"
        setup = SmoothCacheSetup(blocks, source=source, node_id=unique_id)
        return {"ui": {"text": [text]}, "result": (patch_model(model, setup),)}


NODE_CLASS_MAPPINGS = {"SmoothCacheCalibrate": SmoothCacheCalibrate, "SmoothCacheApply": SmoothCacheApply}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SmoothCacheCalibrate": "SmoothCache Calibrate",
    "SmoothCacheApply": "SmoothCache Apply",
}
