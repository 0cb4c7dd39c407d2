"""Structural checks that a discovered branch's output may be reused on a later step.

A branch is left out (never wrapped) when, read from its code and attributes, reusing its output would be
wrong:

- its output is not a residual branch: a diffusers ``Attention(residual_connection=True)`` (UNet attention
  blocks) adds its own input, so reusing it would bring back a stale hidden state;
- it keeps state across calls: an attribute of the branch, of a submodule or of an attention processor is a
  KV cache (``kv_cache``, ``past_key_values``, ``cached_*``..., or an object whose class is a ``*Cache``);
- its ``forward`` is annotated to return something other than tensors or tuples of tensors (a dict, a list,
  a ``*Output`` dataclass, a cache);
- the block modifies the branch's output in place (``out += x``, ``out.mul_(...)``, ``out[...] = x``, through
  views such as ``out.view(...)``, ``chunk``/``split``/``unbind`` parts), found in the source of the block's
  ``forward``.

Arguments that carry a cache per call (Flux 2's ``kv_cache=`` in ``joint_attention_kwargs``) are not state of
the module; the runtime has to compute, not reuse, a call that receives one.
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import re
import textwrap
from dataclasses import dataclass
from typing import Iterable

import torch.nn as nn

__all__ = [
    "SkipRecord",
    "branch_problems",
    "inplace_uses",
    "residual_problem",
    "return_problem",
    "state_problem",
]

logger = logging.getLogger(__name__)

_STATE_NAME = re.compile(
    r"(^|_)(kv|k|v|key|value|layer|attn|attention)_?caches?$|past_key|^cached_|_cached$|^cache_[kv]$", re.I
)
_STATE_CLASS = re.compile(r"Cache$|KVCache|KVLayerCache")
_BAD_RETURN = re.compile(r"\b(dict|Dict|list|List|Mapping|Sequence|str|\w+Output|\w*Cache)\b")
_VIEW_METHODS = {
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "unsqueeze",
    "squeeze",
    "transpose",
    "permute",
    "flatten",
    "unflatten",
    "narrow",
    "expand",
    "expand_as",
    "t",
    "contiguous",
    "detach",
    "as_strided",
    "movedim",
    "split",
    "chunk",
    "unbind",
    "tensor_split",
}
_SPLITTERS = {"split", "chunk", "unbind", "tensor_split"}


@dataclass(frozen=True)
class SkipRecord:
    """A branch found but not wrapped: its path, the key it would have had, and why."""

    path: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ('{self.key}'): {self.reason}"


def residual_problem(module: nn.Module) -> str | None:
    """Why the output of ``module`` is not a residual branch (it already adds its input), if it is not."""
    if getattr(module, "residual_connection", False) is True:
        return "its output already adds its input (residual_connection=True), so it is not a residual branch"
    return None


def state_problem(module: nn.Module) -> str | None:
    """Why ``module`` (or a submodule or attention processor in it) keeps state across calls, if it does."""
    for sub_path, sub in module.named_modules():
        owners = [(sub_path, sub)]
        processor = getattr(sub, "processor", None)
        if processor is not None and not isinstance(processor, nn.Module):
            owners.append((f"{sub_path}.processor".lstrip("."), processor))
        for where, obj in owners:
            attributes = dict(getattr(obj, "__dict__", {}))
            attributes.update(getattr(obj, "_buffers", {}) if isinstance(obj, nn.Module) else {})
            for name, value in attributes.items():
                if name.startswith("__") or name in ("_parameters", "_buffers", "_modules"):
                    continue
                if isinstance(value, (bool, int, float, str)):  # configuration flags (use_kv_cache=False)
                    continue
                if isinstance(value, nn.Module) and not _STATE_CLASS.search(type(value).__name__):
                    continue
                if _STATE_NAME.search(name.lstrip("_")) or _STATE_CLASS.search(type(value).__name__):
                    at = f"{where}.{name}" if where else name
                    return f"keeps state across calls (attribute '{at}' of type {type(value).__name__})"
    return None


def return_problem(module: nn.Module) -> str | None:
    """Why the annotated return type of ``module.forward`` is not tensors or tuples of tensors, if it is
    not."""
    try:
        annotation = inspect.signature(type(module).forward).return_annotation
    except (TypeError, ValueError):
        return None
    if annotation is inspect.Signature.empty:
        return None
    text = (
        annotation
        if isinstance(annotation, str)
        else getattr(annotation, "__name__", None) or repr(annotation)
    )
    text = text.replace("typing.", "")
    match = _BAD_RETURN.search(text)
    if match:
        return f"forward returns {text!s}, not tensors or tuples of tensors"
    return None


def _branch_attr(node: ast.AST) -> str | None:
    """'attn' for ``self.attn(...)`` / ``self.attn.forward(...)`` / ``self.block.attn(...)``."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "forward":
        func = func.value
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name) and func.id == "self" and parts:
        return ".".join(reversed(parts))
    return None


class _InPlaceFinder(ast.NodeVisitor):
    """Follow names bound to branch outputs (and their views) through a forward; note in-place edits of
    them."""

    def __init__(self, attrs: set[str]):
        self.attrs = attrs
        self.alias: dict[str, str] = {}
        self.found: dict[str, str] = {}

    def _source(self, node: ast.AST) -> str | None:
        """The branch whose output (or a view of it) ``node`` evaluates to."""
        attr = _branch_attr(node)
        if attr in self.attrs:
            return attr
        if isinstance(node, ast.Name):
            return self.alias.get(node.id)
        if isinstance(node, ast.Subscript):
            return self._source(node.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _VIEW_METHODS
        ):
            return self._source(node.func.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SPLITTERS
        ):
            return next((s for s in map(self._source, node.args[:1]) if s), None)
        if isinstance(node, ast.Attribute):
            return self._source(node.value) if node.attr in ("T", "mT", "data") else None
        return None

    def _bind(self, target: ast.AST, source: str | None) -> None:
        if isinstance(target, ast.Name):
            if source:
                self.alias[target.id] = source
            else:
                self.alias.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._bind(elt.value if isinstance(elt, ast.Starred) else elt, source)
        elif isinstance(target, ast.Subscript):
            self._note(self._source(target.value), target, "item assignment")

    def _note(self, source: str | None, node: ast.AST, what: str) -> None:
        if source and source not in self.found:
            self.found[source] = (
                f"its output is modified in place downstream ({what}, line {node.lineno} of forward)"
            )

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        source = self._source(node.value)
        for target in node.targets:
            self._bind(target, source)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self._bind(node.target, self._source(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        target = node.target.value if isinstance(node.target, ast.Subscript) else node.target
        self._note(self._source(target), node, "augmented assignment")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr.endswith("_") and not func.attr.startswith("_"):
            self._note(self._source(func.value), node, f".{func.attr}()")
        for kw in node.keywords:
            if kw.arg == "out":
                self._note(self._source(kw.value), node, "out=")


def inplace_uses(block_cls: type, attrs: Iterable[str]) -> dict[str, str]:
    """Branch attribute names (``attn``, ``ff``) whose output ``block_cls.forward`` edits in place."""
    return dict(_inplace_uses(block_cls, tuple(sorted(set(attrs)))))


@functools.lru_cache(maxsize=256)
def _inplace_uses(block_cls: type, attrs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    try:
        source = textwrap.dedent(inspect.getsource(block_cls.forward))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return ()
    finder = _InPlaceFinder(set(attrs))
    finder.visit(tree)
    return tuple(finder.found.items())


_WARNED: set[tuple[str, str, str]] = set()


def branch_problems(block: nn.Module, branches: list[tuple[str, nn.Module]]) -> dict[str, str]:
    """Relative branch path -> why it must not be cached, for the branches of one block; logs each kind
    once."""
    problems: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for path, _ in branches:
        owner, _, attr = path.rpartition(".")
        owners.setdefault(owner, []).append(attr)
    inplace = {}
    for owner, attrs in owners.items():
        found = inplace_uses(type(block.get_submodule(owner) if owner else block), attrs)
        inplace.update({f"{owner}.{a}" if owner else a: why for a, why in found.items()})
    for path, module in branches:
        reason = (
            residual_problem(module) or state_problem(module) or return_problem(module) or inplace.get(path)
        )
        if reason is None:
            continue
        problems[path] = reason
        marker = (type(block).__name__, path, reason)
        if marker not in _WARNED:
            _WARNED.add(marker)
            logger.warning(
                "smoothcache leaves %s.%s (%s) uncached: %s",
                type(block).__name__,
                path,
                type(module).__name__,
                reason,
            )
    return problems
