"""The ``custom_nodes`` folder through which ComfyUI loads the SmoothCache nodes.

ComfyUI imports each folder of ``<ComfyUI>/custom_nodes``; the one written here holds a single
``__init__.py`` that takes the nodes from the installed ``smoothcache`` package, so upgrading the package
upgrades the nodes. Install the package into the Python that runs ComfyUI first.

    python -m smoothcache.comfyui install /path/to/ComfyUI [--force]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

__all__ = ["FOLDER", "install", "install_command"]

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


def install_command(argv: Sequence[str] | None = None) -> int:
    """``python -m smoothcache.comfyui install PATH``: write the custom_nodes folder, print where."""
    parser = argparse.ArgumentParser(
        prog="python -m smoothcache.comfyui", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("install", help="write custom_nodes/smoothcache into a ComfyUI folder")
    command.add_argument("comfyui", help="the ComfyUI folder (the one holding main.py)")
    command.add_argument("--force", action="store_true", help="replace an existing custom_nodes/smoothcache")
    args = parser.parse_args(argv)
    try:
        target = install(args.comfyui, force=args.force)
    except (FileNotFoundError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {target}; restart ComfyUI to load the SmoothCache nodes")
    return 0
