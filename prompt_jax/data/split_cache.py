"""A whole split decoded once: host memory, or a uint8/float32 .npy memmap on disk when large.

  images, labels = split_cache.fill(batches, n, (S, S, 3), np.uint8, path=None)

`batches` yields (images [b, S, S, 3], labels [b]) in split order; the result is
(images [n, S, S, 3] of `dtype`, labels int32[n]). With `path` (a local .npy file) the images are
written into `np.lib.format.open_memmap` and read back lazily, so a split larger than memory
(sun397, patch_camelyon test) is decoded once per run and then only paged in. The file is written
to `path + '.tmp'` and renamed when complete: an existing `path` is a finished cache and is reused
(its name must carry everything that determines the pixels, `key`: the config fields and the
source's `files_identity`, so changed files under data_dir are decoded again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from absl import logging
import numpy as np


def key(fields: dict) -> str:
  """A short digest of the fields that determine a split's pixels (task, split, image options)."""
  blob = json.dumps(fields, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def files_identity(paths: Iterable[str], extra: Any = None) -> str:
  """A short digest of what a split is read from: each file's path, size and mtime (gs:// through
  tf.io.gfile) and `extra` (e.g. the labels); another digest means other pixels may be read."""
  h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
  for path in sorted(paths):
    if '://' in path:
      import tensorflow as tf  # only for remote files
      st = tf.io.gfile.stat(path)
      h.update(f'{path}:{st.length}:{st.mtime_nsec};'.encode())
    else:
      st = os.stat(path)
      h.update(f'{path}:{st.st_size}:{st.st_mtime_ns};'.encode())
  return h.hexdigest()[:16]


def to_dtype(images01: np.ndarray, dtype) -> np.ndarray:
  """[0, 1] float images -> `dtype`: float32 unchanged, uint8 = round(255 x)."""
  if np.dtype(dtype) == np.uint8:
    return np.round(np.asarray(images01, np.float32) * 255.0).astype(np.uint8)
  return np.asarray(images01, np.float32)


def _read_cached(path: str, labels_path: str, shape: tuple[int, ...], dtype
                 ) -> tuple[np.ndarray, np.ndarray] | None:
  """The cached split, or None (with a warning; it is rebuilt) when a file is truncated, damaged
  or of another shape / dtype."""
  try:
    images = np.load(path, mmap_mode='r', allow_pickle=False)
    labels = np.load(labels_path, allow_pickle=False)
    if images.shape != shape or images.dtype != np.dtype(dtype) or labels.shape != shape[:1]:
      raise ValueError(f'holds {images.shape} {images.dtype} and {labels.shape} labels, '
                       f'{shape} {np.dtype(dtype)} expected')
  except (ValueError, OSError, EOFError) as e:
    logging.warning('the cached split %s is damaged (%s): rebuilding it', path,
                    ' '.join(str(e).split())[:160])
    return None
  return images, labels


def fill(batches: Iterable[tuple[np.ndarray, np.ndarray]], n: int, shape: tuple[int, ...],
         dtype, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Collects a split (see the module docstring). Raises if it does not hold `n` examples."""
  labels_path = None if path is None else path[:-len('.npy')] + '.labels.npy'
  if path is not None and os.path.exists(path) and os.path.exists(labels_path):
    cached = _read_cached(path, labels_path, (n,) + tuple(shape), dtype)
    if cached is not None:
      return cached
  if path is None:
    images = np.zeros((n,) + tuple(shape), dtype)
  else:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    images = np.lib.format.open_memmap(path + '.tmp', 'w+', dtype, (n,) + tuple(shape))
  labels = np.zeros(n, np.int32)
  i = 0
  for x, y in batches:
    b = len(y)
    if i + b > n:
      raise ValueError(f'the split holds more than its declared {n} examples')
    images[i:i + b] = to_dtype(x, dtype)
    labels[i:i + b] = y
    i += b
  if i != n:
    raise ValueError(f'the split holds {i} examples, {n} declared')
  if path is None:
    return images, labels
  images.flush()
  del images
  np.save(labels_path, labels)
  os.replace(path + '.tmp', path)
  return np.load(path, mmap_mode='r', allow_pickle=False), labels
