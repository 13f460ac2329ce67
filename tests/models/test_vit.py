import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import micro_config
from prompt_jax import backbone
from prompt_jax import train
from prompt_jax import tree
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
  assert backbone.build_vit(micro_config(), 5, None).act == 'gelu'


def test_joint_attention_matches_numpy_softmax():
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(3))
  mask = rng.random((5, 5)) > 0.3
  mask[:, 0] = True
  out, _ = attention.joint_attention(q, k, v, mask)
  s = np.einsum('bqhd,bkhd->bhqk', q, k) / 2.0
  s = np.where(mask, s, -np.inf)
  w = np.exp(s - s.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  np.testing.assert_allclose(out, np.einsum('bhqk,bkhd->bqhd', w, v), atol=1e-5)


@pytest.mark.parametrize('method', ['linear', 'full'])
def test_baseline_trainable_sets(method):
  cfg = micro_config(method)
  model = base.get(method).model(cfg, 5, None)
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
