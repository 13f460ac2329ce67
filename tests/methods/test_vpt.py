import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.methods import base
from prompt_jax.methods import vpt
from prompt_jax.models.prompter import BlockOutput


def _prompter(deep, live_tokens=False):
  return vpt.VPTPrompter(num_prompts=3, width=8, depth=4, patch_size=16, deep=deep,
                         live_tokens=live_tokens)


def test_layout_shallow_and_deep():
  """The full path (every token live): the release's layout."""
  x0 = jnp.arange(2 * 5 * 8, dtype=jnp.float32).reshape(2, 5, 8)  # CLS + 4 patches
  for deep in (False, True):
    p = _prompter(deep)
    v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)
    prompts = v['params']['prompts']
    t1 = p.apply(v, 0, BlockOutput(x0), False, method=p.insert)
    x1 = t1.live
    assert x1.shape == (2, 8, 8) and t1.kv is None
    np.testing.assert_array_equal(x1[:, 0], x0[:, 0])          # CLS first
    np.testing.assert_array_equal(x1[:, 1:4], jnp.broadcast_to(prompts[0], (2, 3, 8)))
    np.testing.assert_array_equal(x1[:, 4:], x0[:, 1:])         # then the patches
    x2 = p.apply(v, 2, BlockOutput(x1 + 1.0), False, method=p.insert).live
    assert x2.shape == x1.shape
    if deep:   # prompt outputs discarded, layer-2 prompts inserted
      np.testing.assert_array_equal(x2[:, 1:4], jnp.broadcast_to(prompts[2], (2, 3, 8)))
      np.testing.assert_array_equal(x2[:, 4:], x1[:, 4:] + 1.0)
    else:      # carried through
      np.testing.assert_array_equal(x2, x1 + 1.0)


def test_live_token_layout():
  """Deep prompts are key/value-only in every block (live in the last one only when the pool
  reads them); shallow prompts are live until the last block."""
  x0 = jnp.arange(2 * 5 * 8, dtype=jnp.float32).reshape(2, 5, 8)
  p = _prompter(True, live_tokens=True)
  v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)
  prompts = v['params']['prompts']
  for layer in range(4):
    t = p.apply(v, layer, BlockOutput(x0), False, method=p.insert)
    np.testing.assert_array_equal(t.live, x0)
    np.testing.assert_array_equal(t.kv, prompts[layer])        # [P, D]: the same for every example
  t = p.apply(v, 3, BlockOutput(x0), False, True, method=p.insert)  # the pool reads the prompts
  assert t.kv is None and t.live.shape == (2, 8, 8)
  np.testing.assert_array_equal(t.live[:, 1:4], jnp.broadcast_to(prompts[3], (2, 3, 8)))
  p = _prompter(False, live_tokens=True)
  v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)
  x1 = p.apply(v, 0, BlockOutput(x0), False, method=p.insert).live
  assert x1.shape == (2, 8, 8)
  np.testing.assert_array_equal(p.apply(v, 2, BlockOutput(x1), False, method=p.insert).live, x1)
  t = p.apply(v, 3, BlockOutput(x1), False, method=p.insert)
  np.testing.assert_array_equal(t.kv, x1[:, 1:4])
  np.testing.assert_array_equal(t.live, jnp.concatenate([x1[:, :1], x1[:, 4:]], axis=1))


def test_init_range_and_head_bias():
  cfg = micro_config('vpt')
  cfg.unlock()
  cfg.model.variant = 'B/16'
  cfg.vpt.num_prompts = 50
  model = base.get('vpt').build(cfg, 10, None)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
  assert shapes['params']['prompt']['prompts'].shape == (12, 50, 768)
  p = vpt.VPTPrompter(num_prompts=50, width=768, depth=12, patch_size=16)
  v = p.init(jax.random.PRNGKey(1), 0, BlockOutput(jnp.zeros((1, 197, 768))), False,
             method=p.insert)
  w = np.asarray(v['params']['prompts'])
  bound = math.sqrt(6 / (3 * 16 * 16 + 768))
  assert abs(bound - 0.0625) < 1e-12
  assert w.max() <= bound and w.min() >= -bound and w.max() > 0.95 * bound
  small = base.get('vpt').build(micro_config('vpt'), 5, None)
  params = small.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  np.testing.assert_allclose(params['head']['bias'], -math.log(99), rtol=1e-6)


@pytest.mark.parametrize('live_tokens', [False, True])
def test_prompts_get_no_position_embedding(live_tokens):
  cfg = micro_config('vpt')
  cfg.unlock()
  cfg.model.live_tokens = live_tokens
  model = base.get('vpt').build(cfg, 5, None)
  x = jnp.zeros((1, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(0), x)['params']
  pe = params['Transformer']['posembed_input']['pos_embedding']
  shifted = jax.tree_util.tree_map(lambda a: a, params)
  shifted['Transformer']['posembed_input']['pos_embedding'] = pe + 100.0
  # Block-0 input at prompt positions = raw prompts, whatever the position embedding.
  capture = lambda p: model.apply({'params': p}, x, capture_intermediates=True,
                                  mutable=['intermediates'])[1]['intermediates']
  a = capture(params)['Transformer']['encoderblock_0']['LayerNorm_0']['__call__']
  b = capture(shifted)['Transformer']['encoderblock_0']['LayerNorm_0']['__call__']
  if live_tokens:  # LayerNorm_0 runs on the live [CLS, patches], then on the kv-only prompts
    (a_live, a_prompts), (b_live, b_prompts) = a, b
    assert a_prompts.shape == (8, 64)
  else:
    a_live, b_live = (jnp.concatenate([c[0][:, :1], c[0][:, 9:]], axis=1) for c in (a, b))
    a_prompts, b_prompts = a[0][:, 1:9], b[0][:, 1:9]
  np.testing.assert_allclose(a_prompts, b_prompts, atol=1e-5)   # prompt rows unchanged
  assert not np.allclose(a_live[:, 1:], b_live[:, 1:])           # patch rows did move


@pytest.mark.parametrize('live_tokens', [True, False])
def test_prompt_dropout_mask_is_per_example(live_tokens):
  # The release drops out after expanding the prompts to the batch: one mask per example.
  cfg = micro_config('vpt')
  cfg.unlock()
  cfg.vpt.dropout = 0.5
  cfg.model.live_tokens = live_tokens
  model = base.get('vpt').build(cfg, 5, None)
  img = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, 32, 32, 3)), (8, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(1), img)['params']
  train, _ = model.apply({'params': params}, img, train=True,
                         rngs={'dropout': jax.random.PRNGKey(2)})
  train = np.asarray(train)
  assert all(not np.allclose(train[0], train[i]) for i in range(1, 8))
  ev, _ = model.apply({'params': params}, img, train=False)
  np.testing.assert_allclose(np.asarray(ev), np.broadcast_to(np.asarray(ev)[:1], (8, 5)),
                             atol=1e-6)
