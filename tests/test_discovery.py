"""Structural discovery: the key-naming rule, the safety refusals and the errors, on small hand-built models.

The blocks here are user-style classes holding diffusers' ``Attention`` and ``FeedForward`` modules, so
discovery (not the table) finds them. Real diffusers families are in ``test_families_generic.py``.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention

from smoothcache import Schedule, SmoothCache, TargetError
from smoothcache.discovery import discover, is_attention, is_feed_forward
from smoothcache.targets import find_branches

DIM = 8


def _attn() -> Attention:
    return Attention(DIM, heads=2, dim_head=4)


class Block(nn.Module):
    """x + attn(norm(x)), x + ff(norm(x))."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.attn = _attn()
        self.norm2 = nn.LayerNorm(DIM)
        self.ff = FeedForward(DIM, mult=2)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class SingleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = _attn()

    def forward(self, x):
        return x + self.attn(x)


class SpatialBlock(Block):
    pass


class TemporalBlock(Block):
    pass


class Net(nn.Module):
    """Runs every block list it is given, in order."""

    def __init__(self, **lists):
        super().__init__()
        for name, blocks in lists.items():
            setattr(self, name, nn.ModuleList(blocks))
        self._lists = list(lists)

    def forward(self, x, timestep=None):
        for name in self._lists:
            for block in getattr(self, name):
                x = block(x)
        return x


def _keys(model, **kwargs) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in find_branches(model, **kwargs):
        out[b.key] = out.get(b.key, 0) + 1
    return out


# ----------------------------------------------------------------------------------------- the naming rule
def test_keys_are_attribute_names_prefixed_by_their_block_list():
    model = Net(transformer_blocks=[Block(), Block()], single_transformer_blocks=[SingleBlock()],
                noise_refiner=[Block()])
    assert _keys(model) == {
        "attn": 2,
        "ff": 2,
        "single_attn": 1,
        "noise_refiner_attn": 1,
        "noise_refiner_ff": 1,
    }
    found = {(b.path, b.key, b.block) for b in find_branches(model)}
    assert ("transformer_blocks.1.ff", "ff", 1) in found
    assert ("single_transformer_blocks.0.attn", "single_attn", 0) in found  # numbered per group from 0


def test_classes_sharing_one_list_get_their_distinguishing_name():
    model = Net(blocks=[SpatialBlock(), TemporalBlock(), SpatialBlock(), TemporalBlock()])
    branches = find_branches(model)
    assert [(b.key, b.block) for b in branches if b.key.endswith("attn")] == [
        ("spatial_attn", 0),
        ("temporal_attn", 0),
        ("spatial_attn", 1),
        ("temporal_attn", 1),
    ]


def test_lists_with_the_same_name_use_their_whole_path():
    model = nn.Module()
    model.encoder = Net(blocks=[Block()])
    model.decoder = Net(blocks=[Block(), Block()])
    assert _keys(model) == {"attn": 1, "ff": 1, "decoder_attn": 2, "decoder_ff": 2}


def test_table_keys_never_change_and_discovery_steps_aside():
    """A DiT block (table row: attn1, attn2, ff) next to a discovered block using the same attribute names."""
    from diffusers.models.attention import BasicTransformerBlock

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn1 = _attn()
            self.ff = FeedForward(DIM)

    model = Net(transformer_blocks=[BasicTransformerBlock(DIM, 2, 4)], blocks=[Other()])
    keys = _keys(model)
    assert keys["attn1"] == 1 and keys["ff"] == 1  # the table's, on transformer_blocks.0
    assert {k for k in keys if k not in ("attn1", "attn2", "ff")} == {"other_attn1", "other_ff"}
    paths = {b.key: b.path for b in find_branches(model)}
    assert paths["attn1"] == "transformer_blocks.0.attn1" and paths["other_attn1"] == "blocks.0.attn1"


def test_repeated_blocks_outside_lists_and_containers():
    """``_repeated_blocks`` names blocks held as attributes; a declared class holding a block list
    (HunyuanVideo's token refiner) is a container: its list items are the blocks."""

    class Refiner(nn.Module):
        def __init__(self):
            super().__init__()
            self.refiner_blocks = nn.ModuleList([Block(), Block()])

    class Model(nn.Module):
        _repeated_blocks = ["Block", "Refiner"]

        def __init__(self):
            super().__init__()
            self.refiner = Refiner()
            self.first = Block()
            self.second = Block()

    assert _keys(Model()) == {
        "refiner_attn": 2,
        "refiner_ff": 2,
        "first_attn": 1,
        "first_ff": 1,
        "second_attn": 1,
        "second_ff": 1,
    }


def test_only_whole_attention_and_feed_forward_modules_are_branches():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = _attn()
            self.mlp = nn.Sequential(nn.Linear(DIM, 2 * DIM), nn.GELU(), nn.Linear(2 * DIM, DIM))  # by name
            self.proj_out = nn.Linear(DIM, DIM)  # a projection
            self.norm_mlp = nn.Sequential(nn.Linear(DIM, DIM), nn.Linear(DIM, DIM))  # a norm by name
            self.gate = nn.Sequential(nn.Linear(DIM, DIM), nn.Linear(DIM, DIM))  # neither

    model = Net(transformer_blocks=[Mixed()])
    assert _keys(model) == {"attn": 1, "mlp": 1}
    block = model.transformer_blocks[0]
    assert is_attention(block.attn) and not is_attention(block.mlp)
    assert is_feed_forward(FeedForward(DIM)) and not is_feed_forward(block.attn.to_q, "to_q")
    assert not any(is_feed_forward(m) for m in block.attn.modules())  # nothing inside attention competes


# ---------------------------------------------------------------------------------------------- safety
class KVAttention(Attention):
    """Keeps its keys and values across calls: reusing its output would skip the cache update."""

    def __init__(self):
        super().__init__(DIM, heads=2, dim_head=4)
        self.kv_cache = None


class DictAttention(Attention):
    def __init__(self):
        super().__init__(DIM, heads=2, dim_head=4)

    def forward(self, hidden_states, **kwargs) -> dict:  # noqa: D102
        return {"sample": super().forward(hidden_states)}


class StatefulBlock(Block):
    def __init__(self):
        super().__init__()
        self.attn = KVAttention()


class DictBlock(Block):
    def __init__(self):
        super().__init__()
        self.attn = DictAttention()

    def forward(self, x):
        x = x + self.attn(x)["sample"]
        return x + self.ff(x)


class InPlaceBlock(Block):
    def forward(self, x):
        h = self.attn(self.norm1(x))
        parts = h.chunk(2, dim=-1)
        parts[0].mul_(0.5)  # edits the attention output through a view
        ff = self.ff(self.norm2(x))
        ff = ff * 2  # a new tensor: in-place use below is fine
        ff += 1
        return x + h + ff


def test_stateful_non_tensor_and_in_place_branches_are_left_out_with_a_warning(caplog):
    model = Net(stateful_blocks=[StatefulBlock()], dict_blocks=[DictBlock()], inplace_blocks=[InPlaceBlock()])
    with caplog.at_level(logging.WARNING, logger="smoothcache"):
        found = discover(model)
    reasons = {r.key: r.reason for r in found.skipped}
    assert set(reasons) == {"stateful_attn", "dict_attn", "inplace_attn"}
    assert "keeps state" in reasons["stateful_attn"] and "kv_cache" in reasons["stateful_attn"]
    assert "dict" in reasons["dict_attn"]
    assert "in place" in reasons["inplace_attn"] and ".mul_()" in reasons["inplace_attn"]
    assert {b.key for b in found.branches} == {"stateful_ff", "dict_ff", "inplace_ff"}
    logged = caplog.text
    assert "KVAttention" in logged and "StatefulBlock.attn" in logged and "uncached" in logged


def test_an_attention_that_adds_its_own_input_is_not_a_residual_branch():
    """UNet-style ``Attention(residual_connection=True)`` returns x + attn(x): reusing it would bring back
    x."""

    class UNetStyle(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention(DIM, heads=2, dim_head=4, residual_connection=True)
            self.ff = FeedForward(DIM)

    found = discover(Net(down_blocks=[UNetStyle()]))
    assert [(r.key, "residual_connection=True" in r.reason) for r in found.skipped] == [
        ("down_attention", True)
    ]
    assert [b.key for b in found.branches] == ["down_ff"]


def test_asking_for_a_refused_branch_names_the_reason():
    model = Net(transformer_blocks=[StatefulBlock()])
    with pytest.raises(TargetError, match=r"transformer_blocks\.0\.attn.*keeps state"):
        find_branches(model, ["attn"])
    with pytest.raises(Exception, match="keeps state"):
        SmoothCache(model, {"attn": [1, 0]})
    assert _keys(model) == {"ff": 1}


def test_a_cache_buffer_is_state_and_a_flag_is_not():
    flagged, buffered = Block(), Block()
    flagged.attn.use_kv_cache = False  # a configuration flag: no state
    buffered.ff.register_buffer("cache_k", torch.zeros(1))
    found = discover(Net(flagged_blocks=[flagged], buffered_blocks=[buffered]))
    assert [(r.key, "'cache_k'" in r.reason) for r in found.skipped] == [("buffered_ff", True)]
    assert {b.key for b in found.branches} == {"flagged_attn", "flagged_ff", "buffered_attn"}


def test_state_in_an_attention_processor_is_found():
    class CachingProcessor:
        def __init__(self):
            self.cached_key = None

        def __call__(self, attn, hidden_states, **kwargs):
            return hidden_states

    block = Block()
    block.attn.set_processor(CachingProcessor())
    found = discover(Net(transformer_blocks=[block]))
    assert [(r.key, "processor.cached_key" in r.reason) for r in found.skipped] == [("attn", True)]


# ---------------------------------------------------------------------------------------------- errors
def test_a_model_without_blocks_still_gets_the_block_classes_hint():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4))
    with pytest.raises(TargetError, match=r"no transformer blocks found in Sequential.*block_classes="):
        find_branches(model)


def test_a_pipeline_where_a_model_was_expected_says_which_attribute_to_pass():
    from types import SimpleNamespace

    pipe = SimpleNamespace(
        transformer=Net(transformer_blocks=[Block()]),
        transformer_2=Net(blocks=[Block()]),
        vae=nn.Linear(2, 2),
    )
    with pytest.raises(TargetError, match=r"pass pipe\.transformer and pipe\.transformer_2"):
        find_branches(pipe)
    with pytest.raises(Exception, match=r"pass pipe\.transformer"):
        SmoothCache(pipe, {"attn": [1, 0]})
    with pytest.raises(TargetError, match="expected a torch.nn.Module"):
        find_branches("transformer")


# ------------------------------------------------------------------------------------------ end to end
def test_a_discovered_model_caches_and_skips():
    torch.manual_seed(0)
    model = Net(transformer_blocks=[Block(), Block()], single_transformer_blocks=[SingleBlock()]).eval()
    x = torch.randn(1, 5, DIM)
    schedule = Schedule({"attn": [1, 0, 1], "ff": [1, 1, 1], "single_attn": [1, 0, 0]})
    with SmoothCache(model, schedule) as cache, torch.no_grad():
        for t in (900, 600, 300):
            model(x, timestep=torch.tensor([t]))
    assert cache.stats.by_key() == {
        "attn": {"computed": 4, "predicted": 2},
        "ff": {"computed": 6, "predicted": 0},
        "single_attn": {"computed": 1, "predicted": 2},
    }
