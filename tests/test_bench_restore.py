"""bench/restore.py: a snapshot notices every kind of change peers make, and restored() undoes them."""

import pytest
import torch

from bench.restore import Snapshot, is_pristine, restored


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn1 = torch.nn.Linear(4, 4)
        self.ff = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.ff(self.attn1(x))


class Transformer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for block in self.transformer_blocks:
            x = block(x)
        return x


class Pipe:
    def __init__(self):
        self.transformer = Transformer()

    def __call__(self, x):
        return self.transformer(x)


def _patched_call(self, x):
    return 2 * self.transformer(x)


CHANGES = {
    "instance forward": lambda p: setattr(p.transformer, "forward", lambda x: x),
    "submodule registered": lambda p: setattr(
        p.transformer, "_norm1_emb", p.transformer.transformer_blocks[0].ff
    ),
    "attribute on the block list": lambda p: setattr(p.transformer.transformer_blocks, "_cached_steps", [1]),
    "torch hook": lambda p: p.transformer.transformer_blocks[1].ff.register_forward_pre_hook(
        lambda m, a: None
    ),
    "class __call__": lambda p: setattr(type(p), "__call__", _patched_call),
    "class attribute": lambda p: setattr(type(p), "_is_cached", True),
    "pipeline attribute": lambda p: setattr(p, "_context_manager", object()),
    "submodule replaced": lambda p: setattr(p.transformer.transformer_blocks[0], "ff", torch.nn.Identity()),
    "weights changed in place": lambda p: torch.nn.init.zeros_(p.transformer.transformer_blocks[0].ff.weight),
}
ORIGINAL_CALL = Pipe.__call__


@pytest.fixture
def pipe():
    torch.manual_seed(0)
    p = Pipe()
    yield p
    Pipe.__call__ = ORIGINAL_CALL  # class-level changes must not leak into the next test
    if "_is_cached" in vars(Pipe):
        del Pipe._is_cached


@pytest.mark.parametrize("change", list(CHANGES))
def test_snapshot_notices_each_change(pipe, change):
    snapshot = Snapshot(pipe)
    assert snapshot.differences() == []
    with torch.no_grad():
        CHANGES[change](pipe)
    assert snapshot.differences(), change


@pytest.mark.parametrize("change", [c for c in CHANGES if c != "weights changed in place"])
def test_restored_undoes_each_change(pipe, change):
    x = torch.randn(3, 4)
    before = pipe(x)
    modules = list(pipe.transformer.named_modules())
    keys = list(pipe.transformer.state_dict())
    with restored(pipe):
        CHANGES[change](pipe)
    assert torch.equal(pipe(x), before)
    assert [(n, id(m)) for n, m in pipe.transformer.named_modules()] == [(n, id(m)) for n, m in modules]
    assert list(pipe.transformer.state_dict()) == keys
    assert vars(Pipe)["__call__"] is ORIGINAL_CALL and "_is_cached" not in vars(Pipe)
    assert "_context_manager" not in vars(pipe)
    assert is_pristine(pipe.transformer)


def test_in_place_weight_change_is_reported_not_hidden(pipe):
    with pytest.raises(RuntimeError, match="parameters changed in place"):
        with restored(pipe), torch.no_grad():
            CHANGES["weights changed in place"](pipe)


def test_restored_refuses_nesting_and_restores_after_an_error(pipe):
    with pytest.raises(ValueError, match="boom"):
        with restored(pipe):
            CHANGES["instance forward"](pipe)
            raise ValueError("boom")
    assert is_pristine(pipe.transformer)
    with restored(pipe):
        with pytest.raises(RuntimeError, match="already applied"):
            with restored(pipe):
                pass
    with restored(pipe):  # the refused inner entry did not leave the transformer marked as taken
        pass
