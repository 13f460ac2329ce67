import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.checkpoints import backbone
from prompt_jax.train import trainer as train
from prompt_jax.util import tree
from prompt_jax.methods import base
from prompt_jax.models import attention
from prompt_jax.models import vit


@pytest.mark.parametrize('variant,width,depth', [('Ti/16', 192, 12), ('S/32', 384, 12),
                                                 ('B/16', 768, 12), ('L/32', 1024, 24),
                                                 ('H/14', 1280, 32)])
def test_variants(variant, width, depth):
  arch = vit.decode_variant(variant)
  patch = int(variant.split('/')[1])
  assert (arch['width'], arch['depth'], arch['patch_size']) == (width, depth, patch)


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match='X/16'):
    vit.decode_variant('X/16')


def test_vit_b16_has_the_released_parameter_count():
  model = vit.VisionTransformer(**vit.decode_variant('B/16'), num_classes=1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
  assert tree.count(shapes['params']) == 86_567_656


def test_gelu_variants_differ_and_exact_is_default():
  x = jnp.linspace(-3, 3, 7)
  exact = vit.activation('gelu')(x)
  tanh = vit.activation('gelu_tanh')(x)
  assert not np.allclose(exact, tanh, atol=1e-5) and np.allclose(exact, tanh, atol=1e-2)
  cfg = micro_config()
  assert backbone.build_vit(cfg, base.get('vpt').arch(cfg), 5, None).act == 'gelu'


@pytest.mark.parametrize('impl', ['einsum', 'fused', 'auto'])
def test_attention_matches_numpy_softmax(impl):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 4, 3, 4)).astype(np.float32)
  k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(2))
  mask = rng.random((4, 5)) > 0.3
  mask[:, 0] = True
  s = np.einsum('bqhd,bkhd->bhqk', q, k) / 2.0
  for m in (None, mask):
    out = attention.dot_product_attention(q, k, v, m, impl=impl)
    sm = s if m is None else np.where(m, s, -np.inf)
    w = np.exp(sm - sm.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum('bhqk,bkhd->bqhd', w, v), atol=1e-5)
  np.testing.assert_allclose(attention.attention_scores(q, k), s, atol=1e-5)
  with pytest.raises(ValueError, match='model.attention'):
    attention.dot_product_attention(q, k, v, impl='flash')


def test_block_live_and_kv_only_tokens_equal_all_live():
  """Key/value-only tokens (batched [B, S, D] or shared [S, D]) change nothing for the live ones."""
  block = vit.Encoder1DBlock(mlp_dim=32, num_heads=2, drop_path=0.1)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 7, 16)), jnp.float32)
  shared = jnp.asarray(rng.normal(size=(2, 16)), jnp.float32)
  params = block.init(jax.random.PRNGKey(0), x)
  rngs = {'dropout': jax.random.PRNGKey(1)}
  full = block.apply(params, x, deterministic=False, rngs=rngs).x
  split = block.apply(params, x[:, :4], x[:, 4:], deterministic=False, rngs=rngs).x
  np.testing.assert_allclose(split, full[:, :4], atol=1e-5)
  x2 = jnp.concatenate([x, jnp.broadcast_to(shared, (3, 2, 16))], axis=1)
  full2 = block.apply(params, x2).x
  np.testing.assert_allclose(block.apply(params, x, shared).x, full2[:, :7], atol=1e-5)
  mask = np.ones((4, 7), bool)
  mask[:, 5] = False
  got = block.apply(params, x[:, :4], x[:, 4:], mask=jnp.asarray(mask)).x
  masked = block.apply(params, jnp.concatenate([x[:, :5], x[:, 6:]], axis=1)).x
  np.testing.assert_allclose(got, masked[:, :4], atol=1e-5)  # the mask drops key 5
  with pytest.raises(ValueError, match='kernel'):  # query-less tokens need the method's kernel
    block.apply(params, x, num_queries=3)
  with pytest.raises(ValueError, match='drop path'):
    block.apply(params, x, fixed=shared, deterministic=False, rngs=rngs)
  with pytest.raises(ValueError, match='sow'):
    block.apply(params, x, sow=('scores',))


@pytest.mark.parametrize('method', ['linear', 'full'])
def test_baseline_trainable_sets(method):
  cfg = micro_config(method)
  model = base.get(method).build(cfg, 5, None)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  tr, fr = tree.split(params, *base.get(method).trainable_patterns(cfg))
  if method == 'linear':
    assert tree.count(tr) == 64 * 5 + 5
  else:
    assert tree.count(tr) == tree.count(params) and not fr


def test_bfloat16_compute_trains(tmp_path):
  cfg = micro_config('vpt', epochs=1, max_steps=3)
  cfg.unlock()
  cfg.model.compute_dtype = 'bfloat16'
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert np.isfinite(res['last_train_loss']) and res['steps'] == 3
