import numpy as np

from prompt_jax.methods import davpt
from prompt_jax.methods import kmeans


def _planted(rng, k=4, per=6, d=16, noise=0.05):
  centres = rng.normal(size=(k, d))
  x = np.concatenate([c + noise * rng.normal(size=(per, d)) for c in centres])
  return x, np.repeat(np.arange(k), per)


def _same_partition(a, b):
  pairs_a = a[:, None] == a[None]
  pairs_b = b[:, None] == b[None]
  return np.array_equal(pairs_a, pairs_b)


def test_cosine_kmeans_recovers_planted_clusters():
  rng = np.random.default_rng(0)
  x, truth = _planted(rng)
  out = davpt.cluster_classes(x, np.ones(len(x), bool), 4, seed=0)
  assert out['num_proxies'] == 4 and out['centroids'].shape == (4, 16)
  assert _same_partition(out['class_map'], truth)


def test_fewer_classes_than_proxies_is_identity():
  x = np.random.default_rng(1).normal(size=(3, 8))
  out = davpt.cluster_classes(x, np.ones(3, bool), 10, seed=0)
  assert out['num_proxies'] == 3
  np.testing.assert_array_equal(out['class_map'], [0, 1, 2])


def test_unseen_classes_get_a_cluster_and_empty_cluster_keeps_centroid():
  rng = np.random.default_rng(2)
  x, truth = _planted(rng, k=3, per=4)
  seen = np.ones(len(x), bool)
  seen[[0, 5]] = False
  # Init from P random classes may start two centroids in one cluster (a local minimum), so count.
  hits = 0
  for seed in range(10):
    out = davpt.cluster_classes(x, seen, 3, seed=seed)
    hits += _same_partition(out['class_map'][seen], truth[seen])
  assert hits >= 5, hits
  assert out['class_map'].min() >= 0 and out['class_map'].max() < 3
  # an init centroid far from every point stays put
  y = x[:8].copy()
  y[:, -1] = 0.0
  far = np.zeros(y.shape[1])
  far[-1] = 1.0  # orthogonal to every point: cosine 0 < cosine to the true centres
  init = np.stack([y[0], y[4], far])
  assign, cent = kmeans.cosine_kmeans(y, 3, init=init)
  assert 2 not in assign
  np.testing.assert_allclose(cent[2], init[2] / np.linalg.norm(init[2]), atol=1e-6)


def test_euclidean_kmeans_finds_centres_and_is_seeded():
  rng = np.random.default_rng(3)
  x, truth = _planted(rng, k=3, per=30, d=4, noise=0.01)
  c1 = kmeans.euclidean_kmeans(x, 3, seed=5)
  c2 = kmeans.euclidean_kmeans(x, 3, seed=5)
  np.testing.assert_array_equal(c1, c2)
  true_c = np.stack([x[truth == k].mean(0) for k in range(3)])
  d = np.linalg.norm(c1[:, None] - true_c[None], axis=-1).min(1)
  assert d.max() < 1e-3
