"""``python -m smoothcache.comfyui install /path/to/ComfyUI``: write the folder through which ComfyUI loads
the SmoothCache nodes (:mod:`smoothcache.comfyui.install`)."""

from __future__ import annotations

import argparse
from typing import Sequence

from ..comfyui.install import install

__all__ = ["install_command"]


def install_command(argv: Sequence[str] | None = None) -> int:
    """``python -m smoothcache.comfyui install PATH``: write the custom_nodes folder, print where."""
    parser = argparse.ArgumentParser(
        prog="python -m smoothcache.comfyui",
        description="Install the SmoothCache nodes into a ComfyUI folder.",
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
