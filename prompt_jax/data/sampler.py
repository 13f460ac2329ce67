"""Class-balanced batch order (DA-VPT): every batch holds N distinct classes × k images each.

Deterministic given `seed`. A class with fewer than k images is refilled by resampling its own
images (P×K sampling), so one pass yields `len(labels) // batch_size` full batches.
"""

from __future__ import annotations

import numpy as np


def class_balanced_order(labels: np.ndarray, batch_size: int, images_per_class: int,
                         seed: int) -> np.ndarray:
  """labels: int[N] -> indices int[(N // batch_size) * batch_size]; each batch_size chunk has
  batch_size // images_per_class distinct classes with images_per_class indices each."""
  labels = np.asarray(labels)
  k = images_per_class
  if batch_size % k:
    raise ValueError(f'batch_size {batch_size} is not a multiple of images_per_class {k}')
  n_cls = batch_size // k
  classes = np.unique(labels)
  if n_cls > len(classes):
    raise ValueError(f'a batch needs {n_cls} classes but the split has only {len(classes)}')
  rng = np.random.default_rng(seed)
  by_class = {c: np.flatnonzero(labels == c) for c in classes}
  pools: dict[int, list[np.ndarray]] = {}

  def refill(c):
    idx = rng.permutation(by_class[c])
    if len(idx) % k:  # top up the last group from the class's own images
      idx = np.concatenate([idx, rng.choice(by_class[c], k - len(idx) % k)])
    pools[c] = list(idx.reshape(-1, k))

  for c in classes:
    refill(c)
  out = []
  for _ in range(len(labels) // batch_size):
    left = np.array([len(pools[c]) for c in classes], np.float64)
    if (left > 0).sum() < n_cls:  # too few classes left this pass: refill the empty ones
      for c, n in zip(classes, left):
        if n == 0:
          refill(c)
      left = np.array([len(pools[c]) for c in classes], np.float64)
    # Classes with more groups left are drawn first, so a pass uses (almost) every image once.
    pick = rng.choice(len(classes), n_cls, replace=False, p=left / left.sum())
    out.extend(pools[classes[i]].pop() for i in pick)
  return np.concatenate(out) if out else np.zeros(0, np.int64)
