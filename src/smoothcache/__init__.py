"""SmoothCache for Diffusion Transformers: calibrate, schedule, cache.

>>> import smoothcache
>>> smoothcache.enable(pipe, speedup=2.5)                 # doctest: +SKIP
>>> pipe(class_labels=[207, 360], num_inference_steps=50)   # doctest: +SKIP  (calibrates, uncached)
>>> pipe(class_labels=[207, 360], num_inference_steps=50)   # doctest: +SKIP  (cached)
>>> print(smoothcache.summary(pipe))                        # doctest: +SKIP

Choosing the budget from measurements (fidelity to the uncached output on held-out inputs):

>>> result = smoothcache.tune(pipe, [{"class_labels": [207, 360]}])   # doctest: +SKIP
>>> schedule = result.best(min_psnr=35).schedule                       # doctest: +SKIP

Step by step, with a profile and a schedule you keep:

>>> from smoothcache import Calibrator, Schedule, SmoothCache
>>> with Calibrator(pipe.transformer) as cal:                                     # doctest: +SKIP
...     pipe(class_labels=[207, 360], num_inference_steps=50)
>>> schedule = Schedule.for_budget(cal.profile, speedup=2.5)                      # doctest: +SKIP
>>> with SmoothCache(pipe.transformer, schedule):                                 # doctest: +SKIP
...     images = pipe(class_labels=[207, 360], num_inference_steps=50).images

The mechanism is in :mod:`smoothcache.hooks`, the original package's helpers in :mod:`smoothcache.compat`
(also importable from here), the model knowledge in :mod:`smoothcache.targets`.
"""

from __future__ import annotations

import importlib

from .cache import SmoothCache
from .calibration import Calibrator
from .compile import compile_repeated_blocks
from .costs import MacReport
from .deprecation import moved
from .errors import CalibrationError, ProfileError, ScheduleError, SmoothCacheWarning, TargetError
from .pipeline import disable, enable, summary
from .profile import CalibrationProfile
from .references import load_reference
from .schedule import Schedule
from .tuning import tune

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "CalibrationProfile",
    "Calibrator",
    "MacReport",
    "ProfileError",
    "Schedule",
    "ScheduleError",
    "SmoothCache",
    "SmoothCacheWarning",
    "TargetError",
    "compile_repeated_blocks",
    "disable",
    "enable",
    "load_reference",
    "summary",
    "tune",
]

#: The original package's helpers: importable from here as they were from ``SmoothCache``.
_COMPAT = ("CalibrationHelper", "DiffuserCacheHelper", "DiffuserCalibrationHelper", "DiTCacheHelper",
           "SmoothCacheHelper")
#: Submodules reachable as attributes.
_SUBMODULES = ("distributed",)
#: Names this module exported before, and where they live now.
_MOVED = {
    "BlockFamily": "smoothcache.targets:BlockFamily",
    "Branch": "smoothcache.branches:Branch",
    "BranchHooks": "smoothcache.hooks:BranchHooks",
    "BranchPolicy": "smoothcache.hooks:BranchPolicy",
    "CacheStats": "smoothcache.stats:CacheStats",
    "ErrorRecorder": "smoothcache.calibration:CalibratorPolicy",
    "MacMeter": "smoothcache.flops:MacPolicy",
    "NotADenoiserError": "smoothcache.errors:NotADenoiserError",
    "PREDICTORS": "smoothcache.predictors:PREDICTORS",
    "ScheduledCache": "smoothcache.scheduled:SmoothCachePolicy",
    "TARGETS": "smoothcache.targets:TARGETS",
    "count_macs": "smoothcache.flops:count_macs",
    "denoisers": "smoothcache.denoisers:denoisers",
    "find_branches": "smoothcache.targets:find_branches",
    "map_keys": "smoothcache.references:map_keys",
    "reference_names": "smoothcache.references:reference_names",
    "scan": "smoothcache.planning.greedy:scan",
}

_moved = moved(__name__, _MOVED)


def __getattr__(name: str):
    if name in _COMPAT:
        return getattr(importlib.import_module(".compat", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    return _moved(name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_COMPAT) + list(_SUBMODULES))
