"""The block seam for projection deltas and residual branches (models/deltas.py, Tokens.deltas):
applied to key/value-only tokens (shared [P, D] and batched [B, P, D]) exactly as to the same
tokens computed live, and actually applied (the output moves with them)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.models import vit
from prompt_jax.models.deltas import Deltas
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

D, HEADS, P = 64, 4, 3


class Toy(Prompter):
  """P prompts replaced before every block (VPT-deep layout), a LoRA-like qkv delta and
  adapter-like branches; layout: 'live' | 'kv_shared' | 'kv_batched'; use_deltas False: none."""

  layout: str = 'live'
  use_deltas: bool = True

  def setup(self):
    init = lambda s: nn.initializers.normal(s)
    self.p = self.param('p', init(1.0), (P, D))
    self.a = self.param('a', init(0.2), (D, 4))
    self.b = self.param('b', init(0.2), (4, 3 * D))
    self.w = self.param('w', init(0.1), (D, D))

  def qkv(self, y):
    d = (y @ self.a @ self.b).reshape(y.shape[:-1] + (3, HEADS, D // HEADS))
    return d[..., 0, :, :], None, d[..., 2, :, :]  # no key delta: None must be accepted

  def insert(self, layer, prev, train, pool_reads_prompts=False):
    deltas = Deltas(qkv=self.qkv, attn=lambda h: jnp.tanh(h @ self.w),
                    mlp=lambda h: h @ self.w) if self.use_deltas else None
    x, b = prev.x, prev.x.shape[0]
    batched = jnp.broadcast_to(self.p[None], (b, P, D))
    if self.layout == 'live':
      rest = x[:, 1:] if layer == 0 else x[:, 1 + P:]
      return Tokens(jnp.concatenate([x[:, :1], batched, rest], 1), deltas=deltas)
    return Tokens(x, kv=self.p if self.layout == 'kv_shared' else batched, deltas=deltas)


IMAGES = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3), minval=-1, maxval=1)


def _model(layout, use_deltas=True):
  return vit.VisionTransformer(patch_size=8, width=D, depth=2, mlp_dim=128, num_heads=HEADS,
                               num_classes=5, prompt=Toy(layout, use_deltas), head_init='normal')


def _logits(variables, layout, use_deltas=True):
  return np.asarray(jax.jit(_model(layout, use_deltas).apply)(variables, IMAGES)[0])


def test_deltas_on_key_value_only_tokens_equal_the_live_computation():
  variables = jax.jit(_model('live').init)(jax.random.PRNGKey(2), IMAGES)  # same for every layout
  want = _logits(variables, 'live')
  np.testing.assert_allclose(_logits(variables, 'kv_shared'), want, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(_logits(variables, 'kv_batched'), want, atol=1e-5, rtol=1e-5)
  assert np.abs(_logits(variables, 'live', use_deltas=False) - want).max() > 1e-2
