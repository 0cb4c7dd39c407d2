"""``python -m smoothcache.comfyui install /path/to/ComfyUI``."""

import sys

from .install import install_command

sys.exit(install_command())
