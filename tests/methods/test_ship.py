import numpy as np
import jax
import jax.numpy as jnp
import pytest

from conftest import micro_config
from prompt_jax.methods import base
from prompt_jax.methods import ship
from prompt_jax.models import attention as attn_lib
from prompt_jax.models import vit
from prompt_jax.models.prompter import Prompter


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


@pytest.mark.parametrize('queries', [False, True])
def test_decoupled_attention_matches_numpy_loops(queries):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 7, 2, 4)) for _ in range(3))
  pin = rng.normal(size=(2, 3, 2, 4))
  spec = attn_lib.AttentionSpec('decoupled', num_image_tokens=4, prompt_weight=0.1,
                                prompt_queries=queries)
  got, cls = attn_lib.decoupled_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v, pin)),
                                          spec)
  np.testing.assert_allclose(np.asarray(got), _np_decoupled(q, k, v, pin, 4, 0.1, queries),
                             atol=1e-5)
  want_cls = np.einsum('bhd,bthd->bht', q[:, 0], k) / 2.0
  np.testing.assert_allclose(np.asarray(cls)[:, :, 0], want_cls, atol=1e-5)


class _DecoupledNoPrompts(Prompter):
  n: int = 17

  def attention(self, layer, num_tokens):
    return attn_lib.AttentionSpec('decoupled', num_image_tokens=self.n), None


def _tiny(prompter):
  return vit.VisionTransformer(**vit.decode_variant('Mu/8'), num_classes=5, prompt=prompter)


def test_decoupled_without_prompts_is_the_plain_vit():
  img = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  plain = _tiny(None)
  params = plain.init(jax.random.PRNGKey(0), img)['params']
  a, _ = plain.apply({'params': params}, img)
  b, _ = _tiny(_DecoupledNoPrompts()).apply({'params': params}, img)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def _ship_model(fast, anchors=(0, 2, 3)):
  return _tiny(ship.SHIPPrompter(width=64, depth=4, anchors=anchors, num_prompts=3,
                                 num_image_tokens=17, num_prototypes=6, fast_inference=fast))


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
  fast, _ = _ship_model(True).apply({'params': params}, img, train=False)
  np.testing.assert_allclose(np.asarray(fast), np.asarray(logits), atol=1e-5)
  # the matching loss is sown in training and is finite
  _, mut = model.apply({'params': params}, img, train=True, rngs={'dropout': jax.random.PRNGKey(2)},
                       mutable=['aux'])
  x = mut['aux']['prompt']['ship_x'][0]
  assert x.shape == (2, 40, 64)
  assert np.isfinite(float(ship.matching_loss(x, mut['aux']['prompt']['ship_scores'][0], 17)))


def test_configs_load():
  from configs import ship_vtab  # pylint: disable=g-import-not-at-top
  c = ship_vtab.get_config('svhn')
  assert (c.train.lr, c.ship.threshold, c.ship.num_prompts) == (0.25, 0.97, 50)
  assert base.get('ship').frozen == (r'^prompt/bank$',)


def test_ship_trains_end_to_end_on_digits(pretrained_npz, tmp_path):
  from prompt_jax import train  # pylint: disable=g-import-not-at-top
  c = micro_config('ship', epochs=1, optimizer='adamw', lr=1e-3, lr_scale_by_batch=False)
  c.unlock()
  c.init.checkpoint = pretrained_npz
  c.ship = ship.section(num_prompts=4, threshold=0.9, num_prototypes=16, kmeans_n_init=1,
                        max_images=200)
  c.model.drop_path = 0.1
  c.lock()
  setup = train.build(c, str(tmp_path / 'b'))
  anchors = setup.prepared['anchors']
  assert anchors[0] == 0 and setup.prepared['affinity'].shape == (4, 4)
  np.testing.assert_array_equal(np.asarray(setup.params['prompt']['bank']), setup.prepared['bank'])
  res = train.train_and_evaluate(c, str(tmp_path / 'r'))
  assert np.isfinite(res['last_train_loss'])
