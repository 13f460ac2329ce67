"""An offline task from scikit-learn's digits (1,797 real 8×8 images shipped inside the package).

Two tasks, disjoint in classes and images, mimic pretraining -> downstream transfer:
  'pretrain'   digits 0-4 (~900 images): splits 'train' (all but 100) and 'val' (100).
  'downstream' digits 5-9 relabelled 0-4 (~900 images), VTAB-like split names:
               'train800' = first 300, 'val200' = next 100, 'train800val200' = both, 'test' = rest.
Images are upsampled bilinearly to `image_size`, grey tiled to RGB, [0,1] then `normalization`.
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from prompt_jax.data import preprocess
from prompt_jax.data import registry
from prompt_jax.data.source import ArraySource


@functools.lru_cache(maxsize=4)
def _images(image_size: int) -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits
  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]
  x = np.asarray(jax.image.resize(x, (len(x), image_size, image_size, 1), 'bilinear'))
  x = np.clip(np.repeat(x, 3, axis=-1), 0.0, 1.0)
  order = np.random.default_rng(0).permutation(len(x))  # fixed: splits never change
  return x[order], d.target[order].astype(np.int32)


def _labels() -> np.ndarray:
  from sklearn.datasets import load_digits
  y = load_digits().target
  return y[np.random.default_rng(0).permutation(len(y))].astype(np.int32)  # as `_images` orders


def split_sizes(task: str) -> dict[str, int]:
  """Examples per split of `task`, from the labels alone (no image is decoded): what preflight
  checks the batch size against before anything loads."""
  y = _labels()
  n = int((y < 5).sum() if task == 'pretrain' else (y >= 5).sum())
  if task == 'pretrain':
    return {'train': n - 100, 'val': 100}
  if task == 'downstream':
    return {'train800': 300, 'val200': 100, 'train800val200': 400, 'test': n - 400}
  raise KeyError(f"digits task must be 'pretrain' or 'downstream', got {task!r}")


def digits_source(task: str, image_size: int = 32, normalization: str = 'minus_one_to_one'
                  ) -> ArraySource:
  x, y = _images(image_size)
  x = preprocess.normalize(x, normalization).astype(np.float32)
  if task == 'pretrain':
    keep = y < 5
    x, y = x[keep], y[keep]
    return ArraySource({'train': (x[100:], y[100:]), 'val': (x[:100], y[:100])}, num_classes=5)
  if task == 'downstream':
    keep = y >= 5
    x, y = x[keep], y[keep] - 5
    return ArraySource({'train800': (x[:300], y[:300]), 'val200': (x[300:400], y[300:400]),
                        'train800val200': (x[:400], y[:400]), 'test': (x[400:], y[400:])},
                       num_classes=5)
  raise KeyError(f"digits task must be 'pretrain' or 'downstream', got {task!r}")


@registry.register('digits')
def _factory(cfg: ml_collections.ConfigDict) -> ArraySource:
  return digits_source(cfg.task, cfg.image_size, cfg.normalization)
