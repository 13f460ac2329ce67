"""Live-token blocks are exact: `model.live_tokens=True` (prompt tokens whose block output nothing
reads are only keys and values) gives the logits, loss and trainable-parameter gradients of
`model.live_tokens=False` (every token computed in every block, what the releases compute).

Training mode with drop path and prompt dropout on (both paths draw the same masks), and eval mode.
SHIP's full path runs with `fast_inference=False` (the release's last block).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.util import tree
from prompt_jax.configs import common
from prompt_jax.methods import base

pytestmark = pytest.mark.slow  # ~3-5 min in all on 2 CPU cores

TOL = 1e-5
CLASSES = 5


def _close(got, want, what):
  """|got - want| <= TOL·max(1, max|want|) (the gradients of the alpha=32 DA-VPT loss are large)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  scale = max(1.0, float(np.abs(want).max()))
  err = float(np.abs(got - want).max())
  assert err <= TOL * scale, f'{what}: max |live - full| = {err:.3g} (scale {scale:.3g})'


def _run(cfg, prepared, live_tokens, params=None):
  cfg = cfg.copy_and_resolve_references()
  cfg.unlock()
  cfg.model.live_tokens = live_tokens
  if 'ship' in cfg and not live_tokens:
    cfg.ship.fast_inference = False
  method = base.get(cfg.method)
  model = method.build(cfg, CLASSES, prepared)
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
  batch = {'image': images, 'label': jnp.array([0, 1, 3, 4]), 'mask': jnp.array([1, 1, 1, 0], bool)}
  if params is None:
    params = model.init(jax.random.PRNGKey(1), images)['params']
    params = method.model.init_params(params, prepared, cfg)
    noise = lambda p, k: p + 0.05 * jax.random.normal(k, p.shape, p.dtype)  # non-trivial LN, cls
    flat = tree.flat(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(flat))
    params = tree.nest({k: v if k.startswith('prompt/') else noise(v, r)
                        for (k, v), r in zip(sorted(flat.items()), keys)})
  trainable, frozen = tree.split(params, *method.trainable_patterns(cfg))
  state = method.recipe.init_state(prepared, cfg)

  def loss_fn(tr):
    (logits, out), mut = model.apply({'params': tree.merge(tr, frozen)}, images, train=True,
                                     rngs={'dropout': jax.random.PRNGKey(2)}, mutable=['aux'])
    loss, metrics = method.recipe.loss(base.LossInputs(logits, out, mut.get('aux', {}), batch,
                                                       state, cfg))
    return loss, (logits, metrics, sum(b.shape[1] for b in out['blocks']))

  (loss, (logits, metrics, tokens)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
  eval_logits, eval_out = model.apply({'params': params}, images)
  return params, dict(loss=loss, logits=logits, metrics=metrics, grads=grads,
                      eval_logits=eval_logits,
                      tokens=tokens + sum(b.shape[1] for b in eval_out['blocks']))


def _check(cfg, prepared=None, fewer=True):
  params, live = _run(cfg, prepared, True)
  _, full = _run(cfg, prepared, False, params)
  if fewer:  # else every prompt output is read (VPT-shallow with a mean pool)
    assert live['tokens'] < full['tokens'], 'the live path computed no fewer tokens'
  for k in ('loss', 'logits', 'eval_logits'):
    _close(live[k], full[k], k)
  assert set(live['metrics']) == set(full['metrics'])
  for k in live['metrics']:
    _close(live['metrics'][k], full['metrics'][k], f'metric {k}')
  flat_live, flat_full = tree.flat(live['grads']), tree.flat(full['grads'])
  assert set(flat_live) == set(flat_full) and any(k.startswith('prompt/') for k in flat_live)
  for k in flat_full:
    _close(flat_live[k], flat_full[k], f'gradient of {k}')


def _config(method, pool='cls', drop_path=0.1, **section):
  c = micro_config(method)
  c.unlock()
  c.model.update(pool=pool, drop_path=drop_path)
  for name, fields in section.items():
    c[name] = fields
  return c


@pytest.mark.parametrize('deep,pool', [(True, 'cls'), (True, 'norm_mean'), (False, 'cls'),
                                       (False, 'mean_norm')])
def test_vpt(deep, pool):
  _check(_config('vpt', pool, vpt=common.vpt(num_prompts=5, deep=deep, dropout=0.1)),
         fewer=deep or pool == 'cls')


def test_spt():
  """SPT's recipe: VPT-deep layout, MAE mean pooling, drop path 0.1, AdamW."""
  from prompt_jax.configs import spt_vtab
  c = spt_vtab.get_config('backbone=mae')
  cfg = _config('spt', c.model.pool, vpt=common.vpt(num_prompts=5, deep=True, dropout=0.0))
  prepared = {'prompt/prompts': np.random.default_rng(0).normal(size=(4, 5, 64)).astype(np.float32)}
  _check(cfg, prepared)


@pytest.mark.parametrize('anchor,mask,pool', [
    ('input_mean', False, 'norm_mean'), ('input_mean', True, 'norm_mean'),
    ('attn_out', False, 'norm_mean'), ('attn_out', True, 'norm_mean'), ('input_mean', True, 'cls'),
    ('attn_out', False, 'cls')])
def test_davpt(anchor, mask, pool):
  cfg = _config('davpt', pool, davpt=common.davpt(
      num_proxies=3, num_other=2, proxy_start=2, proxy_end=3, patch_anchor=anchor,
      mask_prompts=mask, lambda_patch=1.0, lambda_cls=0.5, dropout=0.1))
  prepared = {'num_proxies': 3, 'class_map': np.array([0, 1, 2, 0, 1], np.int32),
              'centroids': np.eye(3, 64, dtype=np.float32)}
  _check(cfg, prepared)


@pytest.mark.parametrize('anchors', [(0, 1, 3), (0, 3)])
def test_ship(anchors):
  """(0, 1, 3): attribute prompts at 1 and 3, carried prompts kv-only in blocks 0 and 2; (0, 3):
  at inference the independent prompt is fixed (computed once) in blocks 0 and 1."""
  cfg = _config('ship', ship=common.ship(num_prompts=3))
  bank = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
  _check(cfg, {'anchors': anchors, 'bank': bank})
