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


@pytest.mark.parametrize('num_classes', [1, 2, 3, 10])
def test_fewer_classes_than_a_batch_needs_repeats_classes(num_classes):
  # DA-VPT's batch 32 at 2 images per class needs 16 class groups: 2-class tasks (patch_camelyon)
  # and 10-class ones (svhn, eurosat) repeat classes within a batch, as the release's ClassSampler.
  labels = np.random.default_rng(1).integers(0, num_classes, 400)
  order = sampler.class_balanced_order(labels, 32, 2, seed=5)
  assert len(order) == (400 // 32) * 32
  reps, extra = divmod(16, num_classes)
  for b in order.reshape(-1, 32):
    groups = labels[b].reshape(16, 2)
    assert (groups[:, 0] == groups[:, 1]).all()      # each group is one class
    counts = np.bincount(groups[:, 0], minlength=num_classes)
    assert counts.min() >= reps and counts.max() <= reps + 1 and (counts > reps).sum() == extra
  # deterministic in the seed (a resumed run replays the same batches), different across seeds
  np.testing.assert_array_equal(order, sampler.class_balanced_order(labels, 32, 2, seed=5))
  assert not np.array_equal(order, sampler.class_balanced_order(labels, 32, 2, seed=6))


def test_errors():
  with pytest.raises(ValueError, match='multiple'):
    sampler.class_balanced_order(np.arange(10), 5, 2, 0)


def test_imbalanced_classes_are_drawn_uniformly():
  # Noahsark/DA-VPT Dataset/class_sampler.py `_smart_sample(classes, draws)`: every class
  # draws // C times plus `random.sample(classes, draws % C)`, uniform whatever the class sizes:
  # with 16 groups over 5 classes each class fills (3 + 1/5) / 16 = 20% of a batch.
  sizes = [734, 69, 150, 26, 21]
  labels = np.repeat(np.arange(5), sizes)
  groups = np.concatenate([labels[sampler.class_balanced_order(labels, 32, 2, seed=s)]
                           for s in range(40)])
  share = np.bincount(groups, minlength=5) / len(groups)
  np.testing.assert_allclose(share, 0.2, atol=0.004)
  # more classes than a batch needs: 4 of 10 uneven classes per batch, each class 40% of batches
  labels = np.repeat(np.arange(10), [300, 5, 5, 5, 5, 5, 5, 5, 5, 60])
  order = sampler.class_balanced_order(labels, 8, 2, seed=0)
  present = np.stack([np.bincount(labels[b], minlength=10) > 0 for b in order.reshape(-1, 8)])
  np.testing.assert_allclose(present.mean(0), 0.4, atol=0.04)
