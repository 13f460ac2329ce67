"""Evaluators: how a model is scored over a split, found by name (big_vision's `evaluators/`).

  from prompt_jax import evaluators
  evaluators.get('classification')(step, batches, total=n, desc='eval test')  # the trainer's
  evaluators.get('top1')(predict, source.iterate('test', 64), total=n)         # any logits fn

An evaluator is `fn(predict, batches, *, total, desc) -> {metric: value}`: it owns its loop over
`batches` (dicts with 'image', 'label' and the padding 'mask', as every data source yields them)
and calls `predict` on each. Each module of this package registers one (`register`); a module
elsewhere registers its own the same way and is found once imported. `iterate` is the one
progress-reporting iteration over a split they share (and `features.extract`); `on_split` runs
one over a data source's split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prompt_jax.util import progress
from prompt_jax.util import registry

Batch = dict[str, Any]
Evaluator = Callable[..., dict[str, Any]]

EVALUATORS: registry.Registry[Evaluator] = registry.Registry('evaluator', 'prompt_jax.evaluators')


def register(name: str) -> Callable[[Evaluator], Evaluator]:
  """Decorator registering an evaluator under `name`."""
  return EVALUATORS.register(name)


def get(name: str) -> Evaluator:
  """The evaluator registered as `name` ('classification', 'top1', ...)."""
  return EVALUATORS.get(name)


def iterate(batches: Iterable[Batch], *, total: int | None, desc: str,
            unit: str = 'batch') -> Iterator[Batch]:
  """`batches` with a progress bar (cleared when done); `total` in `unit`s."""
  yield from progress.bar(batches, total=total, desc=desc, unit=unit, leave=False)


def on_split(name: str, predict: Callable[..., Any], source: Any, split: str,
             batch_size: int) -> dict[str, Any]:
  """Evaluator `name` over `source.iterate(split, batch_size)` (the source's padded batches)."""
  return get(name)(predict, source.iterate(split, batch_size),
                   total=-(-source.splits[split] // batch_size), desc=f'eval {split}')
