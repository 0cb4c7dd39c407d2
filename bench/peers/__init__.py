"""diffusers' own caches, made to run on a class-conditional ``DiTPipeline``, as peers for the quality
benchmark.

- :mod:`.session`: what DiT lacks and we supply from outside (cache context, current timestep, per-generation
  reset), around one installed cache, with exact restore on exit;
- :mod:`.installers`: one installer per family and what each needs (``CONTEXT``); MagCache's calibration;
- :mod:`.points`: the operating points, as :class:`PeerMethod` objects (``peer_methods``);
- :mod:`.compute`: executed ``attn1`` / ``ff`` rows over a generation (``measure_compute``);
- :mod:`.probes`: which families still fail, and what each does with documented usage alone.

``python -m bench.peers [--scheduler ddim|dpm] [--steps 50]`` measures every operating point on the digits DiT
(cache-dit's too, when it is installed).
"""

from ..restore import is_pristine
from .compute import ComputeCount, measure_compute
from .installers import CONTEXT, calibrate_mag_ratios
from .points import FAMILIES, PeerMethod, peer_methods
from .probes import peer_failures, unassisted_failures
from .session import HookSession

__all__ = ["CONTEXT", "FAMILIES", "ComputeCount", "HookSession", "PeerMethod", "calibrate_mag_ratios",
           "is_pristine", "measure_compute", "peer_failures", "peer_methods", "unassisted_failures"]
