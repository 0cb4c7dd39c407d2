"""SmoothCache for Diffusion Transformers: calibrate, schedule, cache.

>>> from smoothcache import Calibrator, Schedule, SmoothCache
>>> with Calibrator(pipe.transformer) as cal:          # doctest: +SKIP
...     pipe(class_labels=[207, 360], num_inference_steps=50)
>>> schedule = Schedule.from_profile(cal.profile, alpha=0.08)   # doctest: +SKIP
>>> with SmoothCache(pipe.transformer, schedule):      # doctest: +SKIP
...     images = pipe(class_labels=[207, 360], num_inference_steps=50).images
"""

from .cache import ScheduledCache, SmoothCache, SmoothCacheWarning
from .calibration import Calibrator, ErrorRecorder
from .errors import CalibrationError, ProfileError, ScheduleError
from .compat import (
    CalibrationHelper,
    DiffuserCacheHelper,
    DiffuserCalibrationHelper,
    DiTCacheHelper,
    SmoothCacheHelper,
)
from . import distributed
from .compile import compile_repeated_blocks
from .flops import MacMeter, MacReport, count_macs
from .hooks import BranchHooks, BranchPolicy
from .pipeline import denoisers, disable, enable, summary
from .predictors import PREDICTORS
from .profile import CalibrationProfile
from .references import load_reference, map_keys, reference_names
from .scan import scan
from .schedule import Schedule
from .stats import CacheStats
from .targets import TARGETS, BlockFamily, Branch, NotADenoiserError, TargetError, find_branches

__version__ = "0.1.0"

__all__ = [
    "BlockFamily",
    "Branch",
    "BranchHooks",
    "BranchPolicy",
    "CacheStats",
    "CalibrationError",
    "CalibrationHelper",
    "CalibrationProfile",
    "Calibrator",
    "DiTCacheHelper",
    "DiffuserCacheHelper",
    "DiffuserCalibrationHelper",
    "ErrorRecorder",
    "MacMeter",
    "MacReport",
    "NotADenoiserError",
    "PREDICTORS",
    "ProfileError",
    "Schedule",
    "ScheduleError",
    "ScheduledCache",
    "SmoothCache",
    "SmoothCacheHelper",
    "SmoothCacheWarning",
    "TARGETS",
    "TargetError",
    "compile_repeated_blocks",
    "count_macs",
    "denoisers",
    "disable",
    "distributed",
    "enable",
    "find_branches",
    "load_reference",
    "map_keys",
    "reference_names",
    "scan",
    "summary",
]
