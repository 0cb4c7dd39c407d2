"""torch.compile: regional compilation of the blocks with a cache, no recompiles per step."""

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from conftest import make_tiny_dit, run_steps
from smoothcache import Schedule, SmoothCache, compile_repeated_blocks

TS = tuple(range(999, 0, -100))
SCHEDULE = Schedule.fixed_interval(len(TS), 2, ["attn1", "ff"])


@pytest.fixture
def fresh_dynamo():
    dynamo.reset()
    counters.clear()
    yield
    dynamo.config.error_on_recompile = False
    dynamo.reset()


def _eager_reference(batch=2):
    model = make_tiny_dit()
    with SmoothCache(model, SCHEDULE):
        return run_steps(model, TS, batch=batch)


@pytest.mark.parametrize("order", ["compile first", "cache first"])
def test_no_recompiles_per_step_after_warm_up(fresh_dynamo, order):
    model = make_tiny_dit()
    if order == "compile first":
        compile_repeated_blocks(model, backend="eager")
        cache = SmoothCache(model, SCHEDULE).enable()
    else:
        cache = SmoothCache(model, SCHEDULE).enable()
        compile_repeated_blocks(model, backend="eager")
    first = run_steps(model, TS)  # warm-up generation
    graphs = counters["stats"]["unique_graphs"]
    frames = counters["frames"]["total"]
    assert 0 < graphs <= 8
    dynamo.config.error_on_recompile = True  # any recompile from here on raises
    for _ in range(2):
        again = run_steps(model, TS)
    cache.disable()
    assert counters["stats"]["unique_graphs"] == graphs and counters["frames"]["total"] == frames
    assert torch.equal(first, again) and torch.equal(first, _eager_reference())
    assert cache.stats.by_key()["attn1"] == {"computed": 3 * 3 * 6, "predicted": 3 * 3 * 4}


def test_compiled_cache_with_inductor_matches_eager_cached(fresh_dynamo):
    model = make_tiny_dit()
    compile_repeated_blocks(model)  # default backend: inductor
    with SmoothCache(model, SCHEDULE):
        run_steps(model, TS)
        dynamo.config.error_on_recompile = True
        got = run_steps(model, TS)
    assert torch.allclose(got, _eager_reference(), atol=1e-5, rtol=1e-5)


def test_fullgraph_is_refused():
    with pytest.raises(ValueError, match="fullgraph=True cannot be used"):
        compile_repeated_blocks(make_tiny_dit(), fullgraph=True)


def test_forecast_schedule_compiles_once_too(fresh_dynamo):
    schedule = Schedule(SCHEDULE.entries, predictor="linear")
    model = make_tiny_dit()
    compile_repeated_blocks(model, backend="eager")
    with SmoothCache(model, schedule) as cache:
        first = run_steps(model, TS)
        graphs = counters["stats"]["unique_graphs"]
        dynamo.config.error_on_recompile = True
        again = run_steps(model, TS)
    assert counters["stats"]["unique_graphs"] == graphs and torch.equal(first, again)
    eager = make_tiny_dit()
    with SmoothCache(eager, schedule):
        assert torch.allclose(run_steps(eager, TS), first, atol=1e-5, rtol=1e-5)
    assert cache.stats.by_key()["attn1"] == {
        "computed": 2 * 3 * 6,
        "predicted": 2 * 3 * 4,
    }  # 2 runs, 3 blocks


def test_a_dropped_compiled_model_is_freed(fresh_dynamo):
    import gc
    import weakref

    model = compile_repeated_blocks(make_tiny_dit(), backend="eager")
    with SmoothCache(model, SCHEDULE):
        run_steps(model, TS[:4])
    block = weakref.ref(model.transformer_blocks[0])
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None and block() is None
