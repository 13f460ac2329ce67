"""Seeded k-means in numpy, shared by DA-VPT (cosine, class clusters) and SPT (euclidean, token
prototypes)."""

from __future__ import annotations

import numpy as np

from prompt_jax.util import progress


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
  """Non-affine LayerNorm over the last axis."""
  x = np.asarray(x, np.float64)
  mu = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps)


def cosine_kmeans(x: np.ndarray, k: int, *, init: np.ndarray | None = None, seed: int = 0,
                  iters: int = 20, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
  """Spherical k-means. x: [N, D] -> (assignment int32[N], unit centroids [k, D]).

  init: [k, D] starting centroids, else k distinct random rows of x (seeded). An empty cluster
  keeps its centroid. Stops after `iters` updates or when no centroid moves more than `tol`.
  """
  x = _unit(np.asarray(x, np.float64))
  if init is None:
    rows = np.random.default_rng(seed).choice(len(x), size=k, replace=False)
    c = x[rows].copy()
  else:
    c = _unit(np.asarray(init, np.float64)).copy()
  assign = np.argmax(x @ c.T, axis=1)
  for _ in range(iters):
    new = c.copy()
    for j in range(k):
      members = x[assign == j]
      if len(members):
        new[j] = _unit(members.mean(0))
    shift = np.abs(new - c).max()
    c = new
    assign = np.argmax(x @ c.T, axis=1)
    if shift < tol:
      break
  return assign.astype(np.int32), c.astype(np.float32)


def euclidean_kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50,
                     tol: float = 1e-4) -> np.ndarray:
  """Lloyd's k-means with k-means++ init (seeded). x: [N, D] -> centres float32[k, D].

  An empty cluster keeps its centre.
  """
  x = np.asarray(x, np.float32)
  rng = np.random.default_rng(seed)
  sq = (x * x).sum(1)
  c = [x[rng.integers(len(x))]]
  d2 = np.maximum(sq - 2 * x @ c[0] + (c[0] ** 2).sum(), 0)
  for _ in range(1, k):
    p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
    c.append(x[rng.choice(len(x), p=p)])
    d2 = np.minimum(d2, np.maximum(sq - 2 * x @ c[-1] + (c[-1] ** 2).sum(), 0))
  c = np.stack(c)
  for _ in progress.bar(range(iters), desc=f'k-means k={k}, {len(x)} points', unit='iter',
                        leave=False):
    dist = sq[:, None] - 2 * x @ c.T + (c * c).sum(1)[None]
    assign = dist.argmin(1)
    new = c.copy()
    counts = np.bincount(assign, minlength=k)
    sums = np.zeros_like(c)
    np.add.at(sums, assign, x)
    nz = counts > 0
    new[nz] = sums[nz] / counts[nz, None]
    shift = np.abs(new - c).max()
    c = new
    if shift < tol:
      break
  return c.astype(np.float32)
