"""Class-balanced sampler: N classes × k images per batch, deterministic per seed."""

import numpy as np
import pytest

from prompt_jax.data import sampler


def test_each_batch_n_classes_times_k():
  labels = np.repeat(np.arange(10), [3, 5, 7, 1, 9, 4, 6, 2, 8, 5])  # 50 images, uneven classes
  order = sampler.class_balanced_order(labels, 8, 2, seed=0)
  assert len(order) == (50 // 8) * 8
  for b in order.reshape(-1, 8):
    classes, counts = np.unique(labels[b], return_counts=True)
    assert len(classes) == 4 and (counts == 2).all()
  np.testing.assert_array_equal(order, sampler.class_balanced_order(labels, 8, 2, seed=0))
  assert not np.array_equal(order, sampler.class_balanced_order(labels, 8, 2, seed=1))


def test_covers_balanced_data_once():
  labels = np.repeat(np.arange(8), 4)  # 32 images, 4 per class
  order = sampler.class_balanced_order(labels, 8, 2, seed=3)
  assert sorted(order.tolist()) == list(range(32))


def test_errors():
  with pytest.raises(ValueError, match='multiple'):
    sampler.class_balanced_order(np.arange(10), 5, 2, 0)
  with pytest.raises(ValueError, match='classes'):
    sampler.class_balanced_order(np.zeros(10, int), 4, 2, 0)
