"""diffusers' own caches, made to run on a class-conditional ``DiTPipeline``, as peers for the quality benchmark.

``bench`` is not a package: ``sys.path.insert(0, "bench"); import peers`` (or load the file with importlib).
``python bench/peers.py [--scheduler ddim|dpm] [--steps 50]`` measures every operating point on the digits DiT.

API
---
``peer_methods(pipe, num_inference_steps=50, guidance_scale=4.0, calibration_labels=(...), *, calibration_seed=...)
-> dict[str, PeerMethod]``
    Every operating point of every working peer, keyed by ``PeerMethod.name`` and ordered family by family from
    the gentlest to the most aggressive point.  MagCache is calibrated here (one ``pipe(...)`` call with
    ``calibration_labels`` / ``calibration_seed`` -- use labels and a seed disjoint from the evaluation ones).

``PeerMethod``
    ``name`` (e.g. ``"FirstBlockCache t=0.1"``), ``family``, ``config`` (the keyword arguments given to the
    diffusers config class, callbacks excluded), ``context`` (what we supply from the outside so that it runs on
    DiT) and ``apply()``: a context manager that installs the hooks on ``pipe.transformer`` and, on exit, removes
    them and restores the transformer exactly (every module's ``forward`` / ``_diffusers_hook`` attributes and
    torch hook dicts are compared against a snapshot taken on entry; a mismatch raises).  Use it as::

        for method in peer_methods(pipe, 50, 1.5, calibration_labels=[...]).values():
            with method.apply():
                images = pipe(class_labels=labels, num_inference_steps=50, guidance_scale=1.5,
                              generator=torch.Generator().manual_seed(seed), output_type="pt").images

    Several ``pipe(...)`` calls may be made inside one ``apply()``: the hook state is reset at the start of each
    generation (detected as the first transformer call, a call whose timestep is above the previous call's, or a call
    after ``len(pipe.scheduler.timesteps)`` calls), so every call gives the same output as a fresh ``apply()`` with
    the same seed.  ``apply()`` yields a session object (``session.generations`` counts the generations seen).

``peer_failures(pipe, ...) -> dict[str, str]``
    Live probe: applies one operating point of every family the way ``peer_methods`` does and runs a short
    generation; returns ``{family: "<ExceptionType>: <message> (tried: ...)"}`` for those that raise.
    Empty when every family works (which is the case for diffusers 0.42.1 + DiTPipeline).

``unassisted_failures(pipe) -> dict[str, str]``
    What each ``apply_*`` does on DiT with documented usage only, then with only part of our help, verbatim
    (exceptions, "hooked nothing", "second generation differs"); it documents why each piece of ``context`` is
    needed.  The transformer is restored afterwards.

``measure_compute(pipe, method=None, **generation_kwargs) -> ComputeCount``
    Runs one generation (inside ``method.apply()`` when a method is given) and counts, per transformer block, the
    sample rows that really went through ``attn1`` and ``ff`` (forward hooks on their first ``Linear``; a skipped,
    broadcast or predicted module never reaches it, and FasterCache's half-batch calls count half).  Gives the
    executed fraction of attention, feed-forward and (MAC-weighted) block compute.

Why DiT needs help (details in each family's ``context``): ``DiTTransformer2DModel`` is not a ``CacheMixin`` and
``DiTPipeline`` neither opens a ``cache_context`` nor exposes ``current_timestep``, nor resets stateful hooks
between generations.  A forward pre-hook on the transformer (registered by ``apply()``) records the ``timestep``
argument (integers 0..999, high to low, the same scale the hooks' timestep ranges use), resets the stateful hooks
at the start of each generation and sets a ``CacheContext`` for the hooks' ``StateManager``s.  With batched CFG there
is one transformer call per step, so a single context name covers both halves of the batch.

Operating points were chosen on the packaged digits DiT (``smoothcache.zoo.digits_pipeline()``, 50 DDIM steps,
guidance 1.5) to span roughly 1.3x-2.5x fewer block computations; their measured fractions are in
``MEASURED_50_STEP_DIGITS`` below (identical with DPM-Solver++).  PAB only broadcasts attention (DiT has no
cross/temporal attention), so its points span 1.5x-2.5x fewer *attention* calls, i.e. 1.15x-1.3x of block MACs.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

__all__ = [
    "ComputeCount",
    "PeerMethod",
    "calibrate_mag_ratios",
    "measure_compute",
    "peer_failures",
    "peer_methods",
    "transformer_fingerprint",
    "unassisted_failures",
]

FAMILIES = ("FirstBlockCache", "MagCache", "PyramidAttentionBroadcast", "FasterCache", "TaylorSeer")

#: Name of the single cache context (batched CFG: one transformer call per step for both halves).
CONTEXT_NAME = "batched_cfg"

# ----------------------------------------------------------------------------------------------------------------
# operating points (per family: gentle -> aggressive); keyword arguments of the diffusers config classes
# ----------------------------------------------------------------------------------------------------------------

FBC_POINTS = ({"threshold": 0.05}, {"threshold": 0.08}, {"threshold": 0.12})
MAG_POINTS = (
    {"threshold": 0.02, "max_skip_steps": 2, "retention_ratio": 0.2},
    {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2},  # diffusers' defaults
    {"threshold": 0.15, "max_skip_steps": 4, "retention_ratio": 0.2},
)
#: PAB only skips attention (DiT has no cross-attention or temporal attention to broadcast), so its points are
#: spread by the attention fraction (~1.5x, ~1.9x, ~2.5x fewer attention calls); the MLPs always run.
PAB_POINTS = (
    {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)},
    {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (100, 800)},
    {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (-1, 900)},
)
FASTER_POINTS = (
    {  # diffusers' defaults (the paper's values)
        "spatial_attention_block_skip_range": 2,
        "spatial_attention_timestep_skip_range": (-1, 681),
        "unconditional_batch_skip_range": 5,
        "unconditional_batch_timestep_skip_range": (-1, 641),
    },
    {
        "spatial_attention_block_skip_range": 2,
        "spatial_attention_timestep_skip_range": (-1, 901),
        "unconditional_batch_skip_range": 5,
        "unconditional_batch_timestep_skip_range": (-1, 901),
    },
    {
        "spatial_attention_block_skip_range": 3,
        "spatial_attention_timestep_skip_range": (-1, 951),
        "unconditional_batch_skip_range": 10,
        "unconditional_batch_timestep_skip_range": (-1, 951),
    },
)
#: ``disable_cache_before_step`` is for 50 steps and scaled proportionally for other step counts.
TAYLOR_POINTS = (
    {"cache_interval": 2, "disable_cache_before_step": 20, "max_order": 1},
    {"cache_interval": 2, "disable_cache_before_step": 3, "max_order": 1},
    {"cache_interval": 3, "disable_cache_before_step": 5, "max_order": 1},
)

#: TaylorSeer's default identifiers (``^transformer_blocks.*attn`` with ``re.fullmatch``) match no module of DiT
#: (its attention is ``attn1``); the paper caches the attention and MLP outputs of every block.
TAYLOR_CACHE_IDENTIFIERS = (r"transformer_blocks\.\d+\.attn1", r"transformer_blocks\.\d+\.ff")

#: Filled in from ``python bench/peers.py`` runs (digits DiT, 50 DDIM steps, guidance 1.5, 20 labels):
#: name -> (attention fraction, feed-forward fraction, block-compute fraction) executed.
MEASURED_50_STEP_DIGITS: dict[str, tuple[float, float, float]] = {
    "FirstBlockCache t=0.05": (0.817, 0.817, 0.817),
    "FirstBlockCache t=0.08": (0.533, 0.533, 0.533),
    "FirstBlockCache t=0.12": (0.417, 0.417, 0.417),
    "MagCache t=0.02 K=2 r=0.2": (0.700, 0.700, 0.700),
    "MagCache t=0.06 K=3 r=0.2": (0.480, 0.480, 0.480),
    "MagCache t=0.15 K=4 r=0.2": (0.400, 0.400, 0.400),
    "PAB every 2 t in [100,800]": (0.660, 1.000, 0.869),
    "PAB every 3 t in [100,800]": (0.520, 1.000, 0.815),
    "PAB every 3 t in [-1,900]": (0.400, 1.000, 0.769),
    "FasterCache uncond every 5 t<641, attn every 2 t<681": (0.610, 0.740, 0.690),
    "FasterCache uncond every 5 t<901, attn every 2 t<901": (0.460, 0.640, 0.571),
    "FasterCache uncond every 10 t<951, attn every 3 t<951": (0.290, 0.570, 0.462),
    "TaylorSeer N=2 O=1 warmup=20": (0.700, 0.700, 0.700),
    "TaylorSeer N=2 O=1 warmup=3": (0.520, 0.520, 0.520),
    "TaylorSeer N=3 O=1 warmup=5": (0.400, 0.400, 0.400),
}


# ----------------------------------------------------------------------------------------------------------------
# transformer fingerprint (what "restored exactly" is checked against)
# ----------------------------------------------------------------------------------------------------------------

_MISSING = object()
_TORCH_HOOK_DICTS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_backward_hooks", "_backward_pre_hooks",
)


def _module_state(module: torch.nn.Module) -> tuple:
    d = module.__dict__
    registry = d.get("_diffusers_hook", _MISSING)
    hook_order = tuple(registry._hook_order) if registry is not _MISSING else None
    torch_hooks = tuple(tuple(getattr(module, name, {}).keys()) for name in _TORCH_HOOK_DICTS)
    return d.get("forward", _MISSING), registry, hook_order, torch_hooks


def transformer_fingerprint(transformer: torch.nn.Module) -> dict[str, tuple]:
    """Per module: (instance ``forward`` or missing, ``_diffusers_hook`` registry or missing, its hook names, torch
    hook ids).  Equal fingerprints (compare with :func:`same_fingerprint`) mean the same hooking state."""
    return {name: _module_state(m) for name, m in transformer.named_modules()}


def same_fingerprint(a: Mapping[str, tuple], b: Mapping[str, tuple]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        (fa, ra, ha, ta), (fb, rb, hb, tb) = a[k], b[k]
        if fa is not fb or ra is not rb or ha != hb or ta != tb:
            return False
    return True


def is_pristine(transformer: torch.nn.Module) -> bool:
    """No module carries an instance ``forward``, a ``_diffusers_hook`` registry or a torch forward hook."""
    for m in transformer.modules():
        if "forward" in m.__dict__ or "_diffusers_hook" in m.__dict__:
            return False
        if any(len(getattr(m, name, {})) for name in _TORCH_HOOK_DICTS):
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# the hooking session: install, supply context, reset per generation, remove and restore
# ----------------------------------------------------------------------------------------------------------------

_ACTIVE: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def _timestep_value(args: tuple, kwargs: dict) -> float:
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if t is None:
        raise ValueError("peers: the transformer was called without a timestep")
    if torch.is_tensor(t):
        t = t.reshape(-1)[0].item()
    return t


def _swap_halves(x: Any) -> Any:
    if torch.is_tensor(x) and x.ndim >= 1 and x.shape[0] % 2 == 0 and x.shape[0] > 0:
        n = x.shape[0] // 2
        return torch.cat([x[n:], x[:n]], dim=0)
    return x


class _Session:
    """Installs one peer on ``pipe.transformer`` and restores it on exit.

    A forward pre-hook on the transformer records the call's timestep (``record_timestep``), sets the
    ``CacheContext`` (``set_context``) and resets the stateful hooks at each generation start (``reset``).
    With all three off the peer is installed exactly as its ``apply_*`` function does and nothing else (used by
    :func:`unassisted_failures`); the transformer is restored on exit in every case.
    """

    def __init__(self, pipe, install: Callable[[torch.nn.Module, "_Session"], None], *, record_timestep: bool = True,
                 set_context: bool = True, reset: bool = True, swap_cfg_halves: bool = False) -> None:
        self.pipe = pipe
        self.install = install
        self.record_timestep = record_timestep or set_context or reset
        self.set_context = set_context
        self.reset = reset
        self.swap_cfg_halves = swap_cfg_halves
        self.current_timestep: float | None = None
        self.step_index = -1
        self.generations = 0
        self._last_t: float | None = None
        self._handles: list = []
        self._added: list[tuple[torch.nn.Module, str]] = []

    # -- callbacks given to the diffusers hooks
    def timestep_callback(self) -> float:
        if self.current_timestep is None:
            raise RuntimeError("peers: no transformer call recorded yet")
        return self.current_timestep

    # -- torch hooks on the transformer (they run before / after the diffusers-wrapped forward)
    def _pre_forward(self, module, args, kwargs):
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        t = _timestep_value(args, kwargs)
        timesteps = getattr(self.pipe.scheduler, "timesteps", None)
        num_steps = len(timesteps) if timesteps is not None else None
        # A generation starts with the first call, with a timestep above the previous one (they go high -> low
        # within a generation; equal neighbours can occur with some sigma schedules), or once the previous
        # generation has made as many calls as the scheduler has timesteps (one call per step: batched CFG).
        if (self._last_t is None or t > self._last_t
                or (num_steps is not None and self.step_index + 1 >= num_steps)):
            if self.reset:
                HookRegistry.check_if_exists_or_initialize(module).reset_stateful_hooks(recurse=True)
            self.step_index = -1
            self.generations += 1
        self.step_index += 1
        self._last_t = t
        self.current_timestep = t
        if not self.set_context:
            return None
        _set_cache_context(module, CacheContext(
            name=CONTEXT_NAME, step_index=self.step_index, timestep=t,
            num_inference_steps=num_steps,
        ))
        return None

    @staticmethod
    def _swap_inputs(module, args, kwargs):
        # DiTPipeline batches [cond, uncond]; FasterCache assumes [uncond, cond] (it keeps the second half).
        args = tuple(_swap_halves(a) for a in args)
        kwargs = {k: _swap_halves(v) if k in ("hidden_states", "class_labels", "timestep") else v
                  for k, v in kwargs.items()}
        return args, kwargs

    @staticmethod
    def _swap_output(module, args, kwargs, output):
        if torch.is_tensor(output):
            return _swap_halves(output)
        if isinstance(output, tuple):
            return (_swap_halves(output[0]), *output[1:])
        output.sample = _swap_halves(output.sample)
        return output

    # -- context manager
    def __enter__(self) -> "_Session":
        from diffusers.hooks import HookRegistry

        transformer = self.pipe.transformer
        if transformer in _ACTIVE:
            raise RuntimeError("peers: a peer is already applied to this transformer")
        self._snapshot = transformer_fingerprint(transformer)
        before = {name: set(state[2] or ()) for name, state in self._snapshot.items()}
        try:
            if self.record_timestep:
                self._handles.append(transformer.register_forward_pre_hook(
                    self._pre_forward, with_kwargs=True, prepend=True))
            if self.swap_cfg_halves:
                self._handles.append(transformer.register_forward_pre_hook(self._swap_inputs, with_kwargs=True))
                self._handles.append(transformer.register_forward_hook(
                    self._swap_output, with_kwargs=True, always_call=False))
            _ACTIVE.add(transformer)
            self.install(transformer, self)
        except BaseException:
            self._collect_added(before)
            self._restore()
            raise
        self._collect_added(before)
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _collect_added(self, before: Mapping[str, set]) -> None:
        self._added = []
        for name, module in self.pipe.transformer.named_modules():
            registry = module.__dict__.get("_diffusers_hook")
            if registry is None:
                continue
            for hook_name in registry._hook_order:
                if hook_name not in before.get(name, set()):
                    self._added.append((module, hook_name))

    def _restore(self) -> None:
        transformer = self.pipe.transformer
        for handle in reversed(self._handles):
            handle.remove()
        self._handles = []
        # remove the diffusers hooks we added, newest first, one module at a time
        for module, hook_name in reversed(self._added):
            registry = module.__dict__.get("_diffusers_hook")
            if registry is not None and hook_name in registry.hooks:
                hook = registry.hooks[hook_name]
                if getattr(hook, "_is_stateful", False):
                    with contextlib.suppress(Exception):
                        hook.reset_state(module)
                registry.remove_hook(hook_name, recurse=False)
        self._added = []
        # put back each module's own attributes exactly as they were
        for name, module in transformer.named_modules():
            fwd, registry, _, _ = self._snapshot.get(name, (_MISSING, _MISSING, None, None))
            d = module.__dict__
            if fwd is _MISSING:
                d.pop("forward", None)
            else:
                d["forward"] = fwd
            if registry is _MISSING:
                d.pop("_diffusers_hook", None)
            else:
                d["_diffusers_hook"] = registry
                registry._child_registries_cache = None
        _ACTIVE.discard(transformer)
        if not same_fingerprint(self._snapshot, transformer_fingerprint(transformer)):
            raise RuntimeError("peers: the transformer could not be restored to its state before apply()")


# ----------------------------------------------------------------------------------------------------------------
# per-family installers
# ----------------------------------------------------------------------------------------------------------------


def _ensure_block_registered(transformer: torch.nn.Module) -> None:
    """FBC and MagCache look each block class up in diffusers' ``TransformerBlockRegistry``.  diffusers 0.42.1
    already registers ``BasicTransformerBlock`` (``return_hidden_states_index=0``, no encoder stream), which is right
    for DiT's blocks; register it with that metadata only if a diffusers version lacks it."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    for cls in {type(b) for b in transformer.transformer_blocks}:
        try:
            TransformerBlockRegistry.get(cls)
        except ValueError:
            TransformerBlockRegistry.register(cls, TransformerBlockMetadata(
                return_hidden_states_index=0, return_encoder_hidden_states_index=None))


def _install_fbc(config: dict):
    def install(transformer, session):
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

        _ensure_block_registered(transformer)
        apply_first_block_cache(transformer, FirstBlockCacheConfig(**config))
    return install


def _install_mag(config: dict, mag_ratios: Sequence[float] | None, num_inference_steps: int, calibrate=False):
    def install(transformer, session):
        from diffusers.hooks import MagCacheConfig, apply_mag_cache

        _ensure_block_registered(transformer)
        kwargs = dict(config, num_inference_steps=num_inference_steps)
        if calibrate:
            kwargs["calibrate"] = True
        else:
            kwargs["mag_ratios"] = torch.tensor(list(mag_ratios), dtype=torch.float32)
        apply_mag_cache(transformer, MagCacheConfig(**kwargs))
    return install


def _install_pab(config: dict):
    def install(transformer, session):
        from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        apply_pyramid_attention_broadcast(transformer, PyramidAttentionBroadcastConfig(
            **config, current_timestep_callback=session.timestep_callback))
    return install


def _faster_attention_weight(module) -> float:
    # diffusers' default (0.5 at every timestep), given explicitly
    return 0.5


def _install_faster(config: dict, cfg: bool):
    def install(transformer, session):
        from diffusers.hooks import FasterCacheConfig, apply_faster_cache

        faster_logger = logging.getLogger("diffusers.hooks.faster_cache")
        level = faster_logger.level
        faster_logger.setLevel(logging.ERROR)  # its "purely experimental" warning, on every apply
        try:
            apply_faster_cache(transformer, FasterCacheConfig(
                **config,
                tensor_format="BCHW",
                is_guidance_distilled=not cfg,
                attention_weight_callback=_faster_attention_weight,
                current_timestep_callback=session.timestep_callback,
                _unconditional_conditional_input_kwargs_identifiers=["hidden_states", "timestep", "class_labels"],
            ))
        finally:
            faster_logger.setLevel(level)
    return install


def _install_taylor(config: dict):
    def install(transformer, session):
        import re

        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

        names = [n for n, _ in transformer.named_modules()
                 if any(re.fullmatch(p, n) for p in TAYLOR_CACHE_IDENTIFIERS)]
        if not names:
            raise ValueError(f"TaylorSeer: no module of {type(transformer).__name__} matches {TAYLOR_CACHE_IDENTIFIERS}")
        apply_taylorseer_cache(transformer, TaylorSeerCacheConfig(
            **config, taylor_factors_dtype=torch.float32, cache_identifiers=list(TAYLOR_CACHE_IDENTIFIERS)))
    return install


_CONTEXT = {
    "FirstBlockCache": (
        "apply_first_block_cache as is (BasicTransformerBlock is already in diffusers' TransformerBlockRegistry, "
        "return_hidden_states_index=0); supplied: a CacheContext set on its StateManager before every transformer "
        "call (without it: 'No cache context is set'), and a reset of its state at each generation start."),
    "MagCache": (
        "mag_ratios measured with MagCacheConfig(calibrate=True) on a separate calibration generation (same steps, "
        "guidance and scheduler; ratios read from its log record) and num_inference_steps passed; supplied: a "
        "CacheContext and a state reset at each generation start (its own step counter only wraps after exactly "
        "num_inference_steps calls)."),
    "PyramidAttentionBroadcast": (
        "current_timestep_callback = the timestep argument of the current transformer call (DiTPipeline has no "
        "current_timestep); skips DiT's self-attention attn1 (no cross-attention in DiT); per-hook iteration "
        "counters reset at each generation start."),
    "FasterCache": (
        "current_timestep_callback from the transformer's timestep argument; tensor_format='BCHW'; "
        "_unconditional_conditional_input_kwargs_identifiers += 'class_labels' (DiT's condition; without it the "
        "CFG-skipping call mixes a half batch of latents with a full batch of labels); is_guidance_distilled = "
        "guidance_scale <= 1; the CFG halves are swapped around the transformer call (DiTPipeline batches "
        "[cond, uncond], FasterCache assumes [uncond, cond] and keeps/computes the second half); "
        "attention_weight_callback = 0.5 (diffusers' default, explicit); state reset at each generation start."),
    "TaylorSeer": (
        "cache_identifiers = transformer_blocks.N.attn1 and transformer_blocks.N.ff (the default patterns match no "
        "DiT module, so the default config silently does nothing); taylor_factors_dtype=float32; a CacheContext for "
        "its StateManagers (without it: 'No cache context is set') and a state reset at each generation start."),
}


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class PeerMethod:
    """One operating point of one diffusers cache, ready to apply to ``pipe.transformer``."""

    name: str
    family: str
    config: dict
    context: str
    pipe: Any = field(repr=False)
    _install: Callable = field(repr=False)
    _swap_cfg_halves: bool = field(default=False, repr=False)

    @contextlib.contextmanager
    def apply(self) -> Iterator[_Session]:
        """Install on ``pipe.transformer``; on exit remove and restore exactly (raises if it cannot)."""
        with _Session(self.pipe, self._install, swap_cfg_halves=self._swap_cfg_halves) as session:
            yield session


def _fmt_range(r) -> str:
    return f"[{r[0]},{r[1]}]"


def calibrate_mag_ratios(pipe, num_inference_steps: int, guidance_scale: float, calibration_labels: Sequence[int],
                         calibration_seed: int = 1234) -> list[float]:
    """Run MagCache's ``calibrate=True`` mode on one generation and return the measured magnitude ratios."""
    records: list[str] = []

    class _Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    mag_logger = logging.getLogger("diffusers.hooks.mag_cache")
    old_level, old_propagate = mag_logger.level, mag_logger.propagate
    handler = _Grab(level=logging.INFO)
    mag_logger.addHandler(handler)
    mag_logger.setLevel(logging.INFO)
    mag_logger.propagate = False
    try:
        with _Session(pipe, _install_mag({}, None, num_inference_steps, calibrate=True)), \
                contextlib.redirect_stdout(io.StringIO()):
            pipe(class_labels=list(calibration_labels), num_inference_steps=num_inference_steps,
                 guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(calibration_seed),
                 output_type="pt")
    finally:
        mag_logger.removeHandler(handler)
        mag_logger.setLevel(old_level)
        mag_logger.propagate = old_propagate
    prefix = "MagCache Calibration Results: "
    found = [r[len(prefix):] for r in records if r.startswith(prefix)]
    if len(found) != 1:
        raise RuntimeError(f"MagCache calibration: expected one result record, got {len(found)}: {records}")
    ratios = [float(x) for x in ast.literal_eval(found[0])]
    if len(ratios) != num_inference_steps:
        raise RuntimeError(f"MagCache calibration: {len(ratios)} ratios for {num_inference_steps} steps")
    return ratios


def peer_methods(pipe, num_inference_steps: int = 50, guidance_scale: float = 4.0,
                 calibration_labels: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), *,
                 calibration_seed: int = 1234, mag_ratios: Sequence[float] | None = None,
                 families: Sequence[str] = FAMILIES) -> dict[str, PeerMethod]:
    """All operating points of the working peers for ``pipe`` (a ``DiTPipeline``), keyed by name.

    ``num_inference_steps`` / ``guidance_scale`` must be the ones the generations will use (MagCache's ratios are
    per step; FasterCache's CFG handling depends on whether guidance is on).  ``mag_ratios`` skips the calibration.
    """
    cfg = guidance_scale > 1
    methods: list[PeerMethod] = []

    def add(name, family, config, install, swap=False):
        methods.append(PeerMethod(name=name, family=family, config=dict(config), context=_CONTEXT[family],
                                  pipe=pipe, _install=install, _swap_cfg_halves=swap))

    if "FirstBlockCache" in families:
        for c in FBC_POINTS:
            add(f"FirstBlockCache t={c['threshold']}", "FirstBlockCache", c, _install_fbc(c))
    if "MagCache" in families:
        if mag_ratios is None:
            mag_ratios = calibrate_mag_ratios(pipe, num_inference_steps, guidance_scale, calibration_labels,
                                              calibration_seed)
        ratios = [round(float(r), 6) for r in mag_ratios]
        for c in MAG_POINTS:
            config = dict(c, num_inference_steps=num_inference_steps, mag_ratios=ratios)
            add(f"MagCache t={c['threshold']} K={c['max_skip_steps']} r={c['retention_ratio']}", "MagCache", config,
                _install_mag(c, ratios, num_inference_steps))
    if "PyramidAttentionBroadcast" in families:
        for c in PAB_POINTS:
            name = (f"PAB every {c['spatial_attention_block_skip_range']} "
                    f"t in {_fmt_range(c['spatial_attention_timestep_skip_range'])}")
            add(name, "PyramidAttentionBroadcast", c, _install_pab(c))
    if "FasterCache" in families:
        for c in FASTER_POINTS:
            name = (f"FasterCache uncond every {c['unconditional_batch_skip_range']} "
                    f"t<{c['unconditional_batch_timestep_skip_range'][1]}, "
                    f"attn every {c['spatial_attention_block_skip_range']} "
                    f"t<{c['spatial_attention_timestep_skip_range'][1]}")
            config = dict(c, tensor_format="BCHW", is_guidance_distilled=not cfg, attention_weight=0.5,
                          uncond_cond_kwargs=["hidden_states", "timestep", "class_labels"], swap_cfg_halves=cfg)
            add(name, "FasterCache", config, _install_faster(c, cfg), swap=cfg)
    if "TaylorSeer" in families:
        for c in TAYLOR_POINTS:  # warm-up steps are given for 50 steps; scaled to num_inference_steps
            c = dict(c, disable_cache_before_step=max(1, round(c["disable_cache_before_step"] * num_inference_steps / 50)))
            name = (f"TaylorSeer N={c['cache_interval']} O={c['max_order']} "
                    f"warmup={c['disable_cache_before_step']}")
            config = dict(c, taylor_factors_dtype="float32", cache_identifiers=list(TAYLOR_CACHE_IDENTIFIERS))
            add(name, "TaylorSeer", config, _install_taylor(c))
    return {m.name: m for m in methods}


def _short_run(pipe, num_inference_steps: int, guidance_scale: float, class_labels: Sequence[int], seed: int = 0):
    return pipe(class_labels=list(class_labels), num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                output_type="pt").images


def peer_failures(pipe, num_inference_steps: int = 10, guidance_scale: float = 4.0,
                  class_labels: Sequence[int] = (0, 1), calibration_labels: Sequence[int] = (2, 3)) -> dict[str, str]:
    """Families that still fail on ``pipe`` with all the outside help of :func:`peer_methods`, verbatim.

    Probes each family live (its first operating point, one short generation); returns
    ``{family: "<ExceptionType>: <message> (tried: <context>)"}``.
    """
    failures: dict[str, str] = {}
    for family in FAMILIES:
        try:
            methods = peer_methods(pipe, num_inference_steps, guidance_scale, calibration_labels, families=(family,))
            method = next(iter(methods.values()))
            with method.apply():
                images = _short_run(pipe, num_inference_steps, guidance_scale, class_labels)
            if not torch.isfinite(images).all():
                raise FloatingPointError("non-finite images")
        except Exception as e:  # noqa: BLE001  (recorded verbatim)
            failures[family] = f"{type(e).__name__}: {e} (tried: {_CONTEXT[family]})"
    return failures


def unassisted_failures(pipe, num_inference_steps: int = 7, guidance_scale: float = 4.0,
                        class_labels: Sequence[int] = (0, 1)) -> dict[str, str]:
    """What each ``apply_*`` does on DiT without (part of) our help, verbatim; documents ``PeerMethod.context``.

    Keys are ``"<family>: <what was given>"``.  The first stage per family is documented usage only (PAB and
    FasterCache get ``current_timestep_callback=lambda: pipe.current_timestep`` as in their docstrings); later
    stages add some of the outside help.  Each stage runs two generations with the same seed; besides exceptions,
    "hooked nothing" and "the second generation differs from the first" are reported.  The transformer is restored
    after every stage.
    """
    from diffusers.hooks import (FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig,
                                 PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig, apply_faster_cache,
                                 apply_first_block_cache, apply_mag_cache, apply_pyramid_attention_broadcast,
                                 apply_taylorseer_cache)

    def pab(tr, s, callback):
        apply_pyramid_attention_broadcast(tr, PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2, current_timestep_callback=callback(s)))

    documented = lambda s: (lambda: pipe.current_timestep)  # noqa: E731
    recorded = lambda s: s.timestep_callback  # noqa: E731
    fbc = lambda tr, s: apply_first_block_cache(tr, FirstBlockCacheConfig(threshold=0.2))  # noqa: E731
    stages = [  # (label, install, record_timestep, set_context, reset)
        ("FirstBlockCache: documented usage", fbc, False, False, False),
        ("MagCache: documented usage without mag_ratios",
         lambda tr, s: apply_mag_cache(tr, MagCacheConfig(num_inference_steps=num_inference_steps)),
         False, False, False),
        ("PyramidAttentionBroadcast: documented usage", lambda tr, s: pab(tr, s, documented), False, False, False),
        ("PyramidAttentionBroadcast: timestep callback, no reset between generations",
         lambda tr, s: pab(tr, s, recorded), True, False, False),
        ("FasterCache: documented usage", lambda tr, s: apply_faster_cache(tr, FasterCacheConfig(
            current_timestep_callback=documented(s))), False, False, False),
        ("FasterCache: timestep callback, tensor_format='BCHW'", lambda tr, s: apply_faster_cache(
            tr, FasterCacheConfig(current_timestep_callback=s.timestep_callback, tensor_format="BCHW")),
         True, False, False),
        ("TaylorSeer: documented usage", lambda tr, s: apply_taylorseer_cache(tr, TaylorSeerCacheConfig()),
         False, False, False),
        ("TaylorSeer: DiT cache_identifiers, no cache context", lambda tr, s: apply_taylorseer_cache(
            tr, TaylorSeerCacheConfig(cache_identifiers=list(TAYLOR_CACHE_IDENTIFIERS))), False, False, False),
    ]
    out: dict[str, str] = {}
    quiet = logging.getLogger("diffusers.hooks.faster_cache")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for label, install, record, context, reset in stages:
            try:
                with _Session(pipe, install, record_timestep=record, set_context=context, reset=reset) as session:
                    hooked = list(session._added)
                    first = _short_run(pipe, num_inference_steps, guidance_scale, class_labels)
                    second = _short_run(pipe, num_inference_steps, guidance_scale, class_labels)
                if not hooked:
                    out[label] = "no exception, but no module was hooked (the default identifiers match nothing)"
                elif not torch.equal(first, second):
                    out[label] = ("no exception, but a second generation with the same seed differs from the first "
                                  f"(max abs diff {(first - second).abs().max().item():.3g}): state carried over")
            except Exception as e:  # noqa: BLE001  (recorded verbatim)
                out[label] = f"{type(e).__name__}: {e}"
    finally:
        quiet.setLevel(level)
    return out


# ----------------------------------------------------------------------------------------------------------------
# compute accounting
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ComputeCount:
    """Sample rows that went through each block's ``attn1`` / ``ff`` during one generation, and the full amounts."""

    attn_rows: int
    ff_rows: int
    full_rows: int  # per module kind: transformer calls x blocks x full batch
    attn_macs_per_row: float
    ff_macs_per_row: float

    @property
    def attn_fraction(self) -> float:
        return self.attn_rows / self.full_rows

    @property
    def ff_fraction(self) -> float:
        return self.ff_rows / self.full_rows

    @property
    def block_fraction(self) -> float:
        """MAC-weighted executed fraction of the blocks' attention + feed-forward."""
        a, f = self.attn_macs_per_row, self.ff_macs_per_row
        return (self.attn_rows * a + self.ff_rows * f) / (self.full_rows * (a + f))

    @property
    def speedup(self) -> float:
        """How many times fewer block MACs than the uncached run."""
        return 1.0 / self.block_fraction if self.block_fraction > 0 else math.inf


def _first_linear(module: torch.nn.Module) -> torch.nn.Linear:
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            return m
    raise ValueError(f"no Linear in {type(module).__name__}")


def measure_compute(pipe, method: PeerMethod | None = None, *, class_labels: Sequence[int] = (0, 1),
                    num_inference_steps: int = 50, guidance_scale: float = 4.0, seed: int = 0) -> ComputeCount:
    """Count executed ``attn1`` / ``ff`` sample rows over one generation (inside ``method.apply()`` if given)."""
    blocks = pipe.transformer.transformer_blocks
    counts = {"attn": 0, "ff": 0, "calls": 0, "batch": 0}
    shape: dict[str, int] = {}
    handles = []

    def counter(kind):
        def hook(module, args):
            x = args[0]
            counts[kind] += x.shape[0]
            shape["tokens"], shape["dim"] = x.shape[-2], x.shape[-1]
        return hook

    def count_call(module, args, kwargs):
        counts["calls"] += 1
        counts["batch"] = max(counts["batch"], len(kwargs.get("class_labels", args[2] if len(args) > 2 else [])))

    for block in blocks:
        handles.append(_first_linear(block.attn1).register_forward_pre_hook(counter("attn")))
        handles.append(_first_linear(block.ff).register_forward_pre_hook(counter("ff")))
    handles.append(pipe.transformer.register_forward_pre_hook(count_call, with_kwargs=True))
    try:
        with (method.apply() if method is not None else contextlib.nullcontext()):
            _short_run(pipe, num_inference_steps, guidance_scale, class_labels, seed)
    finally:
        for h in handles:
            h.remove()
    d, tokens = shape["dim"], shape["tokens"]
    ff_hidden = _first_linear(blocks[0].ff).out_features
    attn_macs = 4 * d * d * tokens + 2 * tokens * tokens * d
    ff_macs = 2 * d * ff_hidden * tokens
    full = counts["calls"] * len(blocks) * counts["batch"]
    return ComputeCount(counts["attn"], counts["ff"], full, attn_macs, ff_macs)


# ----------------------------------------------------------------------------------------------------------------
# command line: measure the operating points on the digits model
# ----------------------------------------------------------------------------------------------------------------


def _main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Measure the peers' executed compute on the digits DiT.")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--labels", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from smoothcache.zoo import DIGITS_GUIDANCE_SCALE, digits_pipeline

    pipe = digits_pipeline(scheduler=args.scheduler)
    g = DIGITS_GUIDANCE_SCALE
    methods = peer_methods(pipe, args.steps, g, calibration_labels=[9 - i % 10 for i in range(20)],
                           calibration_seed=999)
    labels = [i % 10 for i in range(args.labels)]
    print("failures:", peer_failures(pipe))
    for name, method in methods.items():
        t0 = time.perf_counter()
        c = measure_compute(pipe, method, class_labels=labels, num_inference_steps=args.steps, guidance_scale=g)
        print(f"{name:60s} attn {c.attn_fraction:.3f} ff {c.ff_fraction:.3f} block {c.block_fraction:.3f} "
              f"speedup {c.speedup:.2f}x  ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    _main()
