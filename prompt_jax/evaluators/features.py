"""Batched, jitted feature extraction from a frozen model over one split (host numpy result; the
evaluators' batch iteration)."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np

from prompt_jax import evaluators

Array = Any


def extract(model: nn.Module, params: Any, source: Any, split: str, *,
            select: Callable[[Array, dict[str, Array]], Any],
            batch_size: int = 64, max_examples: int | None = None) -> tuple[Any, np.ndarray]:
  """Runs `model.apply({'params': params}, images)` over `split` in eval mode.

  select(logits, out) -> pytree of [B, ...] arrays to keep (e.g. lambda l, o: o['blocks']).
  Returns (pytree of numpy [N, ...] over the first max_examples valid rows, labels int32[N]).
  Only `select`'s outputs are computed (the rest is dead code under jit).
  """

  @jax.jit
  def fwd(p, images):
    logits, out = model.apply({'params': p}, images, train=False)
    return select(logits, out)

  chunks, labels, seen = [], [], 0
  n = source.splits[split] if max_examples is None else min(source.splits[split], max_examples)
  for batch in evaluators.iterate(source.iterate(split, batch_size), total=-(-n // batch_size),
                                  desc=f'features {split}'):
    keep = batch['mask']
    feats = jax.tree_util.tree_map(np.asarray, fwd(params, batch['image']))
    chunks.append(jax.tree_util.tree_map(lambda a, k=keep: a[k], feats))
    labels.append(batch['label'][keep])
    seen += int(keep.sum())
    if max_examples is not None and seen >= max_examples:
      break
  feats = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:max_examples], *chunks)
  labels = np.concatenate(labels)[:max_examples].astype(np.int32)
  return feats, labels
