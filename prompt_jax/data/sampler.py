"""Class-balanced batch order (DA-VPT): every batch holds N = batch_size // k class groups of k
images each.

Deterministic given `seed` (the trainer passes one seed per (run seed, epoch)), so a resumed run
skips to the same batches. One pass yields `len(labels) // batch_size` full batches, as the
release's ClassSampler. A class with fewer than k images is refilled by resampling its own images
(P×K sampling). When the split has fewer classes C than N (2-class tasks at batch 32, k = 2), each
batch repeats classes as the release's ClassSampler does: every class N // C times, plus N % C
distinct others.

Which classes fill a batch's remaining N % C groups (all N when C >= N): uniform over the classes,
as the release's `random.sample(classes, N)`, whatever their sizes (on a task with classes of
734/69/150/26/21 images each class gets 20% of the draws). The draws run through shuffled cycles
of the classes (each class once per cycle), so a balanced split is still covered once per pass.
"""

from __future__ import annotations

import numpy as np


def class_balanced_order(labels: np.ndarray, batch_size: int, images_per_class: int,
                         seed: int) -> np.ndarray:
  """labels: int[N] -> indices int[(N // batch_size) * batch_size]; each batch_size chunk holds
  batch_size // images_per_class groups of images_per_class indices of one class each (distinct
  classes when the split has that many)."""
  labels = np.asarray(labels)
  k = images_per_class
  if batch_size % k:
    raise ValueError(f'batch_size {batch_size} is not a multiple of images_per_class {k}')
  n_groups = batch_size // k
  classes = np.unique(labels)
  if not len(classes):
    return np.zeros(0, np.int64)
  repeats, n_pick = divmod(n_groups, len(classes))  # n_groups < C: repeats 0, n_pick distinct
  rng = np.random.default_rng(seed)
  by_class = {c: np.flatnonzero(labels == c) for c in classes}
  pools: dict[int, list[np.ndarray]] = {}

  def refill(c):
    idx = rng.permutation(by_class[c])
    if len(idx) % k:  # top up the last group from the class's own images
      idx = np.concatenate([idx, rng.choice(by_class[c], k - len(idx) % k)])
    pools[c] = list(idx.reshape(-1, k))

  def take(c):
    if not pools[c]:
      refill(c)
    return pools[c].pop()

  cycle: list[int] = []

  def pick(n):  # n distinct classes, uniformly: the next ones of a shuffled cycle of all classes
    chosen: list[int] = []
    while len(chosen) < n:
      fresh = [j for j, c in enumerate(cycle) if c not in chosen]
      if not fresh:
        cycle.extend(rng.permutation(len(classes)).tolist())
        continue
      chosen.append(cycle.pop(fresh[0]))
    return chosen

  for c in classes:
    refill(c)
  out = []
  for _ in range(len(labels) // batch_size):
    batch = [take(c) for _ in range(repeats) for c in classes]
    batch.extend(take(classes[i]) for i in pick(n_pick))
    out.extend(batch)
  return np.concatenate(out) if out else np.zeros(0, np.int64)
