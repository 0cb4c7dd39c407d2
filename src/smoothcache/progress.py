"""A progress bar that counts the denoising steps of pipeline calls (the commands and ``tune`` use it)."""

from __future__ import annotations

import inspect
from typing import Iterable, Iterator

__all__ = ["StepProgress"]


class StepProgress:
    """Advance a progress bar once per denoising step of the pipeline calls made inside ``with``.

    Through the pipeline's ``callback_on_step_end`` where its ``__call__`` takes one (pass :attr:`call_kwargs`
    to each call), else by counting the steps its ``progress_bar`` iterates (diffusers pipelines, the shipped
    ones included, loop ``for t in self.progress_bar(timesteps)``); a call in which neither counted a step
    advances the bar by ``steps`` when :meth:`end_call` is called after it.

    Args:
        pipe: the pipeline.
        bar: the progress bar (anything with ``update(n)``, e.g. ``tqdm``).
        steps: denoising steps of one call.
    """

    def __init__(self, pipe, bar, steps: int):
        self.pipe, self.bar, self.steps = pipe, bar, int(steps)
        self._counted = 0
        self._patched = False
        try:
            takes_callback = "callback_on_step_end" in inspect.signature(pipe.__call__).parameters
        except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
            takes_callback = False
        #: keyword arguments to pass to each pipeline call
        self.call_kwargs = {"callback_on_step_end": self._on_step_end} if takes_callback else {}

    def _advance(self) -> None:
        self._counted += 1
        self.bar.update(1)

    def _on_step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self._advance()
        return {}

    def _count(self, iterable: Iterable) -> Iterator:
        for item in iterable:
            yield item  # the step runs here
            self._advance()

    def __enter__(self) -> StepProgress:
        original = getattr(self.pipe, "progress_bar", None)
        if not self.call_kwargs and callable(original):
            def counting(iterable=None, total=None):
                return original(iterable, total) if iterable is None else self._count(iterable)

            self.pipe.progress_bar = counting  # an instance attribute, removed on exit
            self._patched = True
        return self

    def end_call(self) -> None:
        """After each pipeline call: a call whose steps were not seen counts as ``steps`` steps."""
        if self._counted == 0:
            self.bar.update(self.steps)
        self._counted = 0

    def __exit__(self, *exc) -> None:
        if self._patched:
            del self.pipe.progress_bar
            self._patched = False
