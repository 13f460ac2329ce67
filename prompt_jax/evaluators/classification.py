"""'classification': the trainer's top-1 and mean loss over a split (padding rows masked out).

`predict(batch)` is the jitted eval step on one batch, returning a clu `metrics.Collection` with
`accuracy` and `loss` (device arrays; merged on device, read once at the end)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prompt_jax import evaluators


@evaluators.register('classification')
def evaluate(predict: Callable[[evaluators.Batch], Any], batches: Iterable[evaluators.Batch], *,
             total: int | None = None, desc: str = 'eval') -> dict[str, float]:
  """{'accuracy', 'loss'} over every batch; ValueError on an empty split."""
  merged = None
  for batch in evaluators.iterate(batches, total=total, desc=desc):
    m = predict(batch)
    merged = m if merged is None else merged.merge(m)
  if merged is None:
    raise ValueError(f'{desc}: the split is empty')
  out = merged.compute()
  return {'accuracy': float(out['accuracy']), 'loss': float(out['loss'])}
