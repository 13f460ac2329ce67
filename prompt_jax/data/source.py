"""The data-source contract every dataset implements, and an in-memory source.

A *source* yields numpy batches for one pass over a named split:

  {'image': float32[B, H, W, 3] (already normalised), 'label': int32[B], 'mask': bool[B]}

`mask` is False on padding rows (eval batches are padded to a fixed size so shapes stay static).
Training passes are shuffled by `(seed, epoch)` only, so a resumed run sees the same order.
Multi-host: each process receives the rows `process_index::process_count` of every global batch, so
`batch_size` is always the GLOBAL batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol
from collections.abc import Iterator

import numpy as np

Batch = dict[str, np.ndarray]


class Source(Protocol):
  """What the trainer needs from a dataset."""

  num_classes: int
  splits: dict[str, int]  # split name -> number of examples

  def iterate(self, split: str, batch_size: int, *, shuffle_seed: int | None = None,
              drop_remainder: bool = False, process_index: int = 0,
              process_count: int = 1) -> Iterator[Batch]:
    """One pass over `split` in global batches of `batch_size` (this host's rows only)."""
    ...


def epoch_order(n: int, shuffle_seed: int | None) -> np.ndarray:
  """Deterministic order for one pass: identity, or a permutation seeded by `shuffle_seed`."""
  if shuffle_seed is None:
    return np.arange(n)
  return np.random.default_rng(shuffle_seed).permutation(n)


def batch_indices(n: int, batch_size: int, *, shuffle_seed: int | None, drop_remainder: bool
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (indices[batch_size], mask[batch_size]); a last partial batch is padded with index 0."""
  order = epoch_order(n, shuffle_seed)
  stop = (n // batch_size) * batch_size if drop_remainder else n
  for start in range(0, stop, batch_size):
    idx = order[start:start + batch_size]
    mask = np.ones(batch_size, bool)
    if len(idx) < batch_size:
      mask[len(idx):] = False
      idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
    yield idx, mask


def host_rows(batch: Batch, process_index: int, process_count: int) -> Batch:
  """This host's contiguous share of a global batch."""
  if process_count == 1:
    return batch
  b = len(batch['label'])
  if b % process_count:
    raise ValueError(f'global batch {b} is not divisible by process_count {process_count}')
  per = b // process_count
  sl = slice(process_index * per, (process_index + 1) * per)
  return {k: v[sl] for k, v in batch.items()}


@dataclasses.dataclass
class ArraySource:
  """A source over in-memory arrays: images float32[N, H, W, 3] (normalised), labels int[N]."""

  arrays: dict[str, tuple[np.ndarray, np.ndarray]]
  num_classes: int

  @property
  def splits(self) -> dict[str, int]:
    return {k: len(v[1]) for k, v in self.arrays.items()}

  def iterate(self, split: str, batch_size: int, *, shuffle_seed: int | None = None,
              drop_remainder: bool = False, process_index: int = 0,
              process_count: int = 1) -> Iterator[Batch]:
    if split not in self.arrays:
      raise KeyError(f'split {split!r} not in {sorted(self.arrays)}')
    images, labels = self.arrays[split]
    for idx, mask in batch_indices(len(labels), batch_size, shuffle_seed=shuffle_seed,
                                   drop_remainder=drop_remainder):
      batch = {'image': images[idx].astype(np.float32), 'label': labels[idx].astype(np.int32),
               'mask': mask}
      yield host_rows(batch, process_index, process_count)
