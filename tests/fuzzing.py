"""Shared settings and checks of the property-based (hypothesis) tests of every loader a user's file reaches.

``make test`` runs :data:`EXAMPLES` examples per property (default 60); for a long run set
``SMOOTHCACHE_FUZZ_EXAMPLES`` (e.g. ``SMOOTHCACHE_FUZZ_EXAMPLES=3000 pytest tests/test_fuzz_*.py``).
Hypothesis keeps no example database (``database=None``) and its caches go to the system's temporary folder,
so nothing is written into the clone; a failure prints the falsifying example instead.
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis caches unicode tables and constants in ./.hypothesis even without a database: not in the clone.
set_hypothesis_home_dir(
    os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or Path(tempfile.gettempdir()) / "smoothcache-hypothesis"
)

EXAMPLES = int(os.environ.get("SMOOTHCACHE_FUZZ_EXAMPLES", "60"))
#: Wall-clock limit of one example; generous because the test machine is shared (the target is ~1 s).
DEADLINE_MS = int(os.environ.get("SMOOTHCACHE_FUZZ_DEADLINE_MS", "2000"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    database=None,
    derandomize=EXAMPLES <= 100,  # make test: the same examples every run (deterministic)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(max_examples: int | None = None) -> settings:
    """:data:`FUZZ`, with fewer examples for an expensive property (scaled like the others in long runs)."""
    if max_examples is None:
        return FUZZ
    return settings(FUZZ, max_examples=max(1, EXAMPLES * max_examples // 60))


def check_message(err: BaseException, *names: str) -> str:
    """The error's message, after checking that it names each of ``names`` (the file, the argument...) and
    says something beyond them."""
    message = str(err)
    for name in names:
        assert name in message, f"{type(err).__name__} does not name {name!r}: {message!r}"
    assert len(message) > sum(len(n) for n in names) + 15, f"the message names no problem: {message!r}"
    return message


@contextmanager
def bounded(seconds: float = 1.0, mebibytes: float = 64.0):
    """Fail if the block takes longer than ``seconds`` (scaled by the deadline setting) or its Python and
    numpy allocations peak above ``mebibytes``."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        if not tracing:
            tracemalloc.stop()
    assert elapsed < seconds * DEADLINE_MS / 1000 * 2, f"took {elapsed:.2f} s"
    assert peak < mebibytes * 2**20, f"allocated {peak / 2**20:.1f} MiB"
