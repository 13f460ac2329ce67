"""SHIP: anchors, matching loss, decoupled attention, fast inference, end-to-end runs."""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from helpers import micro_config
from prompt_jax.train import validation
from prompt_jax.configs import common
from prompt_jax.methods import base
from prompt_jax.methods import ship
from prompt_jax.models import vit
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens


def test_greedy_anchors_known_answers():
  assert ship.greedy_anchors(np.ones((12, 12)) * 0.99, 1.0) == tuple(range(12))
  s = np.full((12, 12), 0.9)
  for a, b in [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (8, 10)]:
    s[a, b] = s[b, a] = 0.95
  np.fill_diagonal(s, 1.0)
  assert ship.greedy_anchors(s, 0.93) == (0, 2, 4, 6, 8, 11)   # spec's cifar100 example
  f = np.random.default_rng(0).normal(size=(3, 5, 4))
  aff = ship.affinity(f)
  np.testing.assert_allclose(np.diag(aff), 1.0, atol=1e-12)
  np.testing.assert_allclose(aff, aff.T)


def test_topk_and_matching_loss_hand_computed():
  # n = 3 image tokens, then 2 prompts; prompt scores are huge but must be ignored.
  x = jnp.array([[[1., 0.], [0., 1.], [-1., 0.], [1., 0.], [0., -1.]]])
  scores = jnp.array([[[5., 3., 1., 100., 100.]]])   # [B=1, H=1, T=5]
  z = ship.topk_tokens(x, scores, n=3, k=2)
  np.testing.assert_array_equal(np.asarray(z), [[[1., 0.], [0., 1.]]])
  # p0=[1,0]: min(0, 1) = 0; p1=[0,-1]: min(1, 2) = 1 -> mean 0.5
  np.testing.assert_allclose(float(ship.matching_loss(x, scores, n=3, k=2)), 0.5, atol=1e-6)


def _np_decoupled(q, k, v, prompt_in, n, w, queries):
  bsz, t, h, d = q.shape
  out = np.zeros_like(q)
  def softmax(a):
    e = np.exp(a - a.max())
    return e / e.sum()
  for b in range(bsz):
    for hh in range(h):
      for i in range(t):
        if i < n:
          s1 = np.array([q[b, i, hh] @ k[b, j, hh] for j in range(n)]) / np.sqrt(d)
          s2 = np.array([q[b, i, hh] @ k[b, j, hh] for j in range(n, t)]) / np.sqrt(d)
          a1 = sum(p * v[b, j, hh] for j, p in zip(range(n), softmax(s1)))
          a2 = sum(p * v[b, j, hh] for j, p in zip(range(n, t), softmax(s2)))
          out[b, i, hh] = (1 - w) * a1 + w * a2
        elif queries:
          s = np.array([q[b, i, hh] @ k[b, j, hh] for j in range(t)]) / np.sqrt(d)
          out[b, i, hh] = sum(p * v[b, j, hh] for j, p in zip(range(t), softmax(s)))
        else:
          out[b, i, hh] = prompt_in[b, i - n, hh]
  return out


@pytest.mark.parametrize('impl', ['einsum', 'fused'])
@pytest.mark.parametrize('queries', [False, True])
def test_decoupled_attention_matches_numpy_loops(queries, impl):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 7, 2, 4)) for _ in range(3))
  pin = rng.normal(size=(2, 3, 2, 4))
  y = np.concatenate([np.zeros((2, 4, 8)), pin.reshape(2, 3, 8)], axis=1)  # normed live tokens
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  kw = dict(y_fixed=None, impl=impl, n=4, weight=0.1)
  got, _, cls = ship.decoupled_attention(f32(q if queries else q[:, :4]), f32(k), f32(v), y=f32(y),
                                         prompt_queries=queries, cls_scores=True, **kw)
  np.testing.assert_allclose(np.asarray(got), _np_decoupled(q, k, v, pin, 4, 0.1, queries),
                             atol=1e-5)
  want_cls = np.einsum('bhd,bthd->bht', q[:, 0], k[:, :4]) / 2.0
  np.testing.assert_allclose(np.asarray(cls), want_cls, atol=1e-5)
  # live / fixed / key-value-only: prompt 0 live, prompt 1 fixed ([C, D]), prompt 2 only keys and
  # values (not in the output)
  want = _np_decoupled(q, k, v, pin, 4, 0.1, False)
  kw.update(y_fixed=f32(y[0, 5:6]))
  got_kv, fixed, _ = ship.decoupled_attention(f32(q[:, :4]), f32(k), f32(v), y=f32(y[:, :5]),
                                              prompt_queries=False, cls_scores=False, **kw)
  np.testing.assert_allclose(np.asarray(got_kv), want[:, :5], atol=1e-5)
  np.testing.assert_allclose(np.asarray(fixed), want[0, 5:6], atol=1e-5)


class _DecoupledNoPrompts(Prompter):
  n: int = 17

  def insert(self, layer, prev, train, pool_reads_prompts=False):
    kernel = functools.partial(ship.decoupled_attention, n=self.n, weight=0.1,
                               prompt_queries=False, cls_scores=False)
    return Tokens(prev.x, num_queries=self.n, kernel=kernel)


def _tiny(prompter):
  return vit.VisionTransformer(**vit.decode_variant('Mu/8'), num_classes=5, prompt=prompter)


def test_decoupled_without_prompts_is_the_plain_vit():
  img = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  plain = _tiny(None)
  params = plain.init(jax.random.PRNGKey(0), img)['params']
  a, _ = plain.apply({'params': params}, img)
  b, _ = _tiny(_DecoupledNoPrompts()).apply({'params': params}, img)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def _ship_model(fast, anchors=(0, 2, 3), live_tokens=False):
  return _tiny(ship.SHIPPrompter(width=64, depth=4, anchors=anchors, num_prompts=3,
                                 num_image_tokens=17, num_prototypes=6, fast_inference=fast,
                                 live_tokens=live_tokens))


def test_ship_forward_layout_and_fast_inference_equal_logits():
  img = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  model = _ship_model(False)
  params = model.init(jax.random.PRNGKey(0), img)['params']
  bank = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
  params = ship.init_params(params, {'bank': bank}, None)
  np.testing.assert_array_equal(np.asarray(params['prompt']['bank']), bank)
  assert params['prompt']['independent'].shape == (3, 3, 64)
  logits, out = model.apply({'params': params}, img, train=False)
  # [CLS+16 patches, independent 3, attribute 10 (anchors 2 and 3), shared 10]
  assert [b.shape[1] for b in out['blocks']] == [17 + 3 + 10, 30, 40, 40]
  fast, fast_out = _ship_model(True).apply({'params': params}, img, train=False)
  np.testing.assert_allclose(np.asarray(fast), np.asarray(logits), atol=1e-5)
  assert fast_out['blocks'][-1].shape[1] == 17  # the last block kept only CLS + patches
  # live tokens: the shared prompt is kv-only everywhere, the carried prompts in the blocks before
  # anchors 2 and 3 (blocks 1, 2), every prompt in the last block at inference; the independent
  # prompt, live in block 0, is there the same for every example (fixed: not in the live tokens)
  live_model = _ship_model(False, live_tokens=True)
  live, live_out = live_model.apply({'params': params}, img, train=False)
  assert [b.shape[1] for b in live_out['blocks']] == [17, 17, 17, 17]
  np.testing.assert_allclose(np.asarray(live), np.asarray(logits), atol=1e-5)
  (_, train_out), _ = live_model.apply({'params': params}, img, train=True, mutable=['aux'])
  assert [b.shape[1] for b in train_out['blocks']] == [17 + 3, 17, 17, 40]
  # fast_inference never changes training: the same sown outputs bit for bit
  rngs = {'dropout': jax.random.PRNGKey(2)}
  (_, slow_out), slow_aux = model.apply({'params': params}, img, train=True, rngs=rngs,
                                        mutable=['aux'])
  (_, fast_out), fast_aux = _ship_model(True).apply({'params': params}, img, train=True, rngs=rngs,
                                                    mutable=['aux'])
  jax.tree_util.tree_map(np.testing.assert_array_equal, slow_aux, fast_aux)
  np.testing.assert_array_equal(slow_out['encoded'], fast_out['encoded'])
  # the matching loss reads the last block's output (every token) and its sown CLS-row scores
  x = slow_out['encoded']
  assert x.shape == (2, 40, 64) and slow_aux['aux']['prompt']['ship_scores'][0].shape == (2, 4, 17)
  assert np.isfinite(float(ship.matching_loss(x, slow_aux['aux']['prompt']['ship_scores'][0], 17)))


def test_configs_load():
  from prompt_jax.configs import ship_vtab
  c = ship_vtab.get_config('svhn')
  assert (c.train.lr, c.ship.threshold, c.ship.num_prompts) == (0.25, 0.97, 50)
  assert base.get('ship').recipe.frozen == (r'^prompt/bank$',)


def test_ship_trains_end_to_end_on_digits(pretrained_npz, tmp_path):
  from prompt_jax.train import trainer as train
  c = micro_config('ship', epochs=1, optimizer='adamw', lr=1e-3, lr_scale_by_batch=False)
  c.unlock()
  c.init.checkpoint = pretrained_npz
  c.ship = common.ship(num_prompts=4, threshold=0.9, num_prototypes=16, kmeans_n_init=1,
                       max_images=200)
  c.model.drop_path = 0.1
  c.lock()
  setup = train.build(c, str(tmp_path / 'b'))
  anchors = setup.prepared['anchors']
  assert anchors[0] == 0 and setup.prepared['affinity'].shape == (4, 4)
  np.testing.assert_array_equal(np.asarray(setup.params['prompt']['bank']), setup.prepared['bank'])
  res = train.train_and_evaluate(c, str(tmp_path / 'r'))
  assert np.isfinite(res['last_train_loss'])


def _tiny_ship_overrides(c, npz):
  c.unlock()
  c.model.variant = 'Mu/8'
  c.data.image_size = 32
  c.init.checkpoint = npz
  c.train.update(epochs=1, batch_size=16, eval_batch_size=32, warmup_epochs=0)
  c.ship.update(num_prompts=4, num_prototypes=8, kmeans_n_init=1, max_images=64)
  c.lock()
  return c


def test_ship_vtab_config_on_mocked_tfds(pretrained_npz, tmp_path, monkeypatch):
  """configs/ship_vtab.py:dtd through main's program table on TFDS's own mock data."""
  import tensorflow_datasets as tfds
  from prompt_jax.configs import ship_vtab
  from prompt_jax import main
  from prompt_jax.data import vtab
  c = _tiny_ship_overrides(ship_vtab.get_config('dtd'), pretrained_npz)
  assert (c.data.task, c.ship.threshold) == ('dtd', 0.98)
  monkeypatch.setattr(vtab, 'base_split_sizes',
                      lambda b: {'train': 10000, 'validation': 500, 'test': 600})
  monkeypatch.setattr(vtab, 'split_size', lambda split, sizes: 20)  # what the mock yields
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    res = main.PROGRAMS[c.program](c, str(tmp_path / 'run'))
  assert np.isfinite(res['last_train_loss'])
  assert 0.0 <= res['final']['test'] <= 1.0 and 'val_selected' in res
  assert os.path.exists(tmp_path / 'run' / 'results.json')


def test_ship_task_mismatch_is_an_error(pretrained_npz):
  from prompt_jax.configs import ship_vtab
  c = _tiny_ship_overrides(ship_vtab.get_config('pets'), pretrained_npz)
  assert c.data.task == 'oxford_iiit_pet' and c.ship.num_prompts == 4
  c.unlock()
  c.data.task = 'svhn'
  c.lock()
  with pytest.raises(ValueError, match='ship_vtab.py:task=svhn'):
    validation.check(c)
  c.unlock()
  c.recipe_task = ''
  validation.check(c)


def test_ship_cli_on_digits(pretrained_npz, tmp_path):
  """`python -m prompt_jax.main --config=configs/ship_vtab.py` on the offline digits task."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run(
      [sys.executable, '-m', 'prompt_jax.main', '--config=configs/ship_vtab.py:cifar100',
       f'--workdir={tmp_path}', '--config.data.source=digits', '--config.data.task=downstream',
       '--config.data.image_size=32', '--config.model.variant=Mu/8',
       f'--config.init.checkpoint={pretrained_npz}', '--config.train.epochs=2',
       '--config.train.warmup_epochs=1', '--config.train.batch_size=32',
       '--config.ship.num_prompts=4', '--config.ship.num_prototypes=16',
       '--config.ship.kmeans_n_init=1'],
      cwd=root, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / 'results.json') as f:
    res = json.load(f)
  assert 0.0 <= res['final']['test'] <= 1.0
  assert res['val_selected']['epoch'] >= 1 and 'best_epoch_selected_on_test' in res


# ----------------------------------------------------------------------------- release recipe


def test_independent_prompt_init_is_torch_xavier_of_1_p_d():
  # torch xavier_uniform_ on (1, P, D): fan_in = P·D, fan_out = D -> sqrt(6/((P+1)·D)).
  p = ship.SHIPPrompter(width=768, depth=12, anchors=(0, 4, 8), num_prompts=50,
                        num_image_tokens=197, num_prototypes=4)
  x = jnp.zeros((1, 197, 768))
  init = lambda: p.init(jax.random.PRNGKey(0), 0, BlockOutput(x), False, method=p.insert)
  assert jax.eval_shape(init)['params']['independent'].shape == (3, 50, 768)
  w = np.asarray(init()['params']['independent'])
  bound = np.sqrt(6 / (51 * 768))
  assert abs(bound - 0.0124) < 1e-4
  assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


def test_head_init_is_normal_002_as_timm():
  from prompt_jax.configs import ship_vtab
  c = ship_vtab.get_config('cifar100')
  init = vit._head_init(c.model.head_init, c.model.head_init_std)
  w = np.asarray(init(jax.random.PRNGKey(0), (768, 1000)))
  assert abs(w.std() - 0.02) < 0.0003, w.std()   # flax trunc_normal(.02) has std 0.0176


def test_preprocessing_resizes_straight_to_224_without_crop():
  import tensorflow as tf
  from prompt_jax.configs import ship_vtab
  from prompt_jax.data import pipeline
  c = ship_vtab.get_config('dtd')
  opts = pipeline.ImageOptions.from_config(c.data)
  img = np.zeros((300, 400, 3), np.uint8)
  img[:, :20] = 255  # a white band on the left, 5% of the width
  out = pipeline.prepare_example({'image': tf.constant(img), 'label': 0}, opts)['image'].numpy()
  assert out.shape == (224, 224, 3)
  # Direct resize: the band is the left 5% of the output (a 256-resize + 224-crop would cut it).
  assert out[:, :10].min() > 0.99 and out[:, 12:].max() < 0.01


def _release_files(tmp_path, aff_shape=(12, 12), bank_shape=(200, 768)):
  rng = np.random.default_rng(0)
  f = rng.normal(size=(12, 30, 8))
  aff = ship.affinity(f).astype(np.float32)
  if aff_shape != (12, 12):
    aff = np.eye(*aff_shape, dtype=np.float32)
  np.save(tmp_path / 'affinity.npy', aff)
  np.save(tmp_path / 'prototype_200_clusters.npy',
          rng.normal(size=bank_shape).astype(np.float32))
  return str(tmp_path / 'affinity.npy'), str(tmp_path / 'prototype_200_clusters.npy'), aff


def test_release_affinity_and_prototype_files_are_checked(tmp_path):
  import types
  from prompt_jax.configs import ship_vtab

  def ctx(aff_path, bank_path, **over):
    c = ship_vtab.get_config('cifar100')
    c.unlock()
    c.ship.update(affinity_path=aff_path, prototypes_path=bank_path, **over)
    def no_features(*a, **k):
      raise AssertionError('both files given: no feature extraction')
    return types.SimpleNamespace(config=c, arch=ship.SHIP.arch(c), features=no_features)

  aff_path, bank_path, aff = _release_files(tmp_path)
  out = ship.prepare(ctx(aff_path, bank_path))
  assert out['bank'].shape == (200, 768)
  assert out['anchors'] == ship.greedy_anchors(aff, 0.93)
  bad = tmp_path / 'bad'
  bad.mkdir()
  bad_aff, bad_bank, _ = _release_files(bad, aff_shape=(11, 11), bank_shape=(200, 384))
  with pytest.raises(ValueError, match=r'affinity_path=.*shape \(11, 11\), expected \(12, 12\)'):
    ship.prepare(ctx(bad_aff, bank_path))
  with pytest.raises(ValueError, match=r'prototypes_path=.*\(200, 384\), expected \[K, 768\]'):
    ship.prepare(ctx(aff_path, bad_bank))
  with pytest.raises(ValueError, match='200 prototypes but ship.num_prototypes=100'):
    ship.prepare(ctx(aff_path, bank_path, num_prototypes=100))
  asym = aff.copy()
  asym[0, 1] += 0.5
  np.save(bad / 'asym.npy', asym)
  with pytest.raises(ValueError, match='symmetric'):
    ship.prepare(ctx(str(bad / 'asym.npy'), bank_path))


def test_padding_rows_do_not_change_the_matching_loss():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(5, 9, 4)), jnp.float32)
  scores = jnp.asarray(rng.normal(size=(5, 2, 9)), jnp.float32)
  mask = jnp.array([True, True, True, False, False])
  want = ship.matching_loss(x[:3], scores[:3], 6, k=3)
  garbage = x.at[3:].set(100.0 * jnp.asarray(rng.normal(size=(2, 9, 4)), jnp.float32))
  got = ship.matching_loss(garbage, scores, 6, mask, k=3)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_default_prototype_bank_is_the_release_kmeans_call():
  """haoweiz23/SHIP train.py:287 `cluster.KMeans(n_clusters=n_cluster, random_state=42)`, no
  n_init, under the scikit-learn its requirements.txt (torch==2.3.0) implies: >= 1.4, n_init 1."""
  import sklearn
  from sklearn import cluster
  from prompt_jax.configs import ship_vtab
  if tuple(int(v) for v in sklearn.__version__.split('.')[:2]) < (1, 4):
    pytest.skip('the release call needs scikit-learn >= 1.4 defaults')
  s = ship_vtab.get_config('task=dtd').ship
  f = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
  want = cluster.KMeans(n_clusters=20, random_state=42).fit(f).cluster_centers_
  got = ship.prototype_bank(f, 20, seed=s.seed, n_init=s.kmeans_n_init)
  np.testing.assert_allclose(got, want, atol=1e-5)
