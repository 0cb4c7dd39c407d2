"""The step progress bar the commands use; it lives in :mod:`smoothcache.progress` (``tune`` uses it too)."""

from ..progress import StepProgress

__all__ = ["StepProgress"]
