"""SmoothCache for ComfyUI: two nodes (Calibrate, Apply) that calibrate and skip DiT blocks through ComfyUI's
documented extension points (block replacements and sampler wrappers on a cloned MODEL).

Importable without ComfyUI; ComfyUI's modules are imported only when a node runs. ComfyUI loads the nodes from
a ``custom_nodes`` folder that ``python -m smoothcache.comfyui install /path/to/ComfyUI`` writes.

Modules: :mod:`.families` (which models, by structure), :mod:`.clock` (steps from sigmas, slots),
:mod:`.streams` (a block's streams and residuals), :mod:`.runs` (skipping runs of blocks), :mod:`.session`
(one sampler run), :mod:`.plans` (the schedule of each run), :mod:`.patch` (the hooks on the model),
:mod:`.nodes` (the nodes), :mod:`.install` (the ``custom_nodes`` folder).
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
