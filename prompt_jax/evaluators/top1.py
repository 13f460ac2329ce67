"""'top1': top-1 accuracy of any `predict(images) -> logits [B, C]` over a split, on the host
(padding rows masked out): exports (`prompt-jax-predict`), CLIP base-to-novel and zero-shot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from prompt_jax import evaluators


@evaluators.register('top1')
def evaluate(predict: Callable[[Any], Any], batches: Iterable[evaluators.Batch], *,
             total: int | None = None, desc: str = 'eval') -> dict[str, Any]:
  """{'accuracy', 'n'}: argmax of `predict(batch['image'])` against batch['label'] over the
  unmasked rows; ValueError on an empty split."""
  correct = n = 0
  for batch in evaluators.iterate(batches, total=total, desc=desc):
    pred = np.asarray(predict(batch['image'])).argmax(-1)
    mask = np.asarray(batch['mask'])
    correct += int(((pred == np.asarray(batch['label'])) & mask).sum())
    n += int(mask.sum())
  if not n:
    raise ValueError(f'{desc}: the split is empty')
  return {'accuracy': correct / n, 'n': n}
