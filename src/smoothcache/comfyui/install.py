"""The ``custom_nodes`` folder through which ComfyUI loads the SmoothCache nodes.

ComfyUI imports each folder of ``<ComfyUI>/custom_nodes``; the one written here holds a single
``__init__.py`` that takes the nodes from the installed ``smoothcache`` package, so upgrading the package
upgrades the nodes. Install the package into the Python that runs ComfyUI first.

    python -m smoothcache.comfyui install /path/to/ComfyUI [--force]
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "install"]

#: the folder written under ``custom_nodes``
FOLDER = "smoothcache"

_LOADER = '''"""SmoothCache nodes for ComfyUI, written by `python -m smoothcache.comfyui install`.

The nodes live in the installed smoothcache package (pip install it into the Python that runs ComfyUI)."""

from smoothcache.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
'''


def install(comfyui: str | Path, force: bool = False) -> Path:
    """Write ``<comfyui>/custom_nodes/smoothcache/__init__.py``; returns its path.

    Raises:
        FileNotFoundError: ``comfyui`` is not a ComfyUI folder (no ``custom_nodes`` folder, no ``comfy``
            package).
        FileExistsError: another ``__init__.py`` is there (``force`` replaces it).
    """
    root = Path(comfyui).expanduser().resolve()
    if not (root / "custom_nodes").is_dir() and not (root / "comfy").is_dir():
        raise FileNotFoundError(
            f"{root} is not a ComfyUI folder (it has no custom_nodes/ or comfy/): give the folder holding "
            "ComfyUI's main.py"
        )
    target = root / "custom_nodes" / FOLDER / "__init__.py"
    if target.exists() and target.read_text(encoding="utf-8") != _LOADER and not force:
        raise FileExistsError(
            f"{target} exists and is not the SmoothCache loader; pass --force to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_LOADER, encoding="utf-8")
    return target
