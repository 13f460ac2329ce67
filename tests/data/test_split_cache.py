"""Decode-once split cache (prompt_jax/data/split_cache.py): memory or a .npy memmap."""

import numpy as np
import pytest

from prompt_jax.data import split_cache


def _batches(x, y, b=3):
  for i in range(0, len(y), b):
    yield x[i:i + b], y[i:i + b]


def test_memory_and_memmap_hold_the_same_pixels(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.random((10, 4, 4, 3)).astype(np.float32)
  y = np.arange(10, dtype=np.int32)
  mem = split_cache.fill(_batches(x, y), 10, (4, 4, 3), np.uint8)
  path = str(tmp_path / 'c' / 'test.npy')
  disk = split_cache.fill(_batches(x, y), 10, (4, 4, 3), np.uint8, path)
  assert isinstance(disk[0], np.memmap)
  np.testing.assert_array_equal(mem[0], disk[0])
  np.testing.assert_array_equal(mem[0], np.round(x * 255).astype(np.uint8))
  np.testing.assert_array_equal(disk[1], y)
  again = split_cache.fill(iter(()), 10, (4, 4, 3), np.uint8, path)  # finished: not re-decoded
  np.testing.assert_array_equal(again[0], mem[0])
  f32 = split_cache.fill(_batches(x, y), 10, (4, 4, 3), np.float32)
  np.testing.assert_array_equal(f32[0], x)


def test_a_split_of_another_size_than_declared_is_an_error(tmp_path):
  x, y = np.zeros((5, 2, 2, 3), np.float32), np.zeros(5, np.int32)
  with pytest.raises(ValueError, match='5 examples, 6 declared'):
    split_cache.fill(_batches(x, y), 6, (2, 2, 3), np.uint8)
  with pytest.raises(ValueError, match='more than its declared 4'):
    split_cache.fill(_batches(x, y), 4, (2, 2, 3), np.uint8, str(tmp_path / 'x.npy'))
  assert not (tmp_path / 'x.npy').exists()


def test_a_truncated_cache_is_rebuilt_and_said_so(tmp_path, caplog):
  rng = np.random.default_rng(0)
  x = rng.random((10, 4, 4, 3)).astype(np.float32)
  y = np.arange(10, dtype=np.int32)
  path = str(tmp_path / 'c' / 'test.npy')
  split_cache.fill(_batches(x, y), 10, (4, 4, 3), np.uint8, path)
  with open(path, 'r+b') as f:
    f.truncate(200)
  images, labels = split_cache.fill(_batches(x, y), 10, (4, 4, 3), np.uint8, path)
  np.testing.assert_array_equal(images, np.round(x * 255).astype(np.uint8))
  np.testing.assert_array_equal(labels, y)
  assert f'the cached split {path} is damaged' in caplog.text and 'rebuilding it' in caplog.text
