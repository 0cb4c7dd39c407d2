"""The runnable examples in the library's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import smoothcache

#: modules whose examples need a hub model or a ComfyUI checkout: illustrative, not run
ILLUSTRATIVE = {"smoothcache", "smoothcache.pipeline"}


def _modules_with_examples() -> list[str]:
    names = ["smoothcache"] + [
        m.name for m in pkgutil.walk_packages(smoothcache.__path__, "smoothcache.")
        if not m.name.startswith("smoothcache.comfyui") and not m.name.endswith("__main__")
    ]
    finder = doctest.DocTestFinder()
    return [
        n for n in names
        if n not in ILLUSTRATIVE
        and any(  # an example that runs (not marked ``+SKIP``)
            not ex.options.get(doctest.SKIP)
            for t in finder.find(importlib.import_module(n))
            for ex in t.examples
        )
    ]


MODULES = _modules_with_examples()


def test_the_core_has_examples():
    assert {"smoothcache.cache", "smoothcache.calibration", "smoothcache.flops"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0, result
