"""``python -m smoothcache.comfyui install /path/to/ComfyUI``."""

import sys

from ..cli.comfyui import install_command

sys.exit(install_command())
