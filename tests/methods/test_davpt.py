import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.configs import common
from prompt_jax.util import tree
from prompt_jax.methods import base
from prompt_jax.methods import davpt
from prompt_jax.models import vit
from prompt_jax.models.prompter import BlockOutput


def numpy_proxy_anchor(z, p, y, alpha=32.0, dp=0.1, dn=-0.1, r=5.0):
  """Spec 03 formula, written with loops."""
  big_p = len(p)
  total_pos, total_neg = 0.0, 0.0
  for k in range(big_p):
    sp, sn = 0.0, 0.0
    for i in range(len(z)):
      s = r * float(np.dot(z[i], p[k]) / (np.linalg.norm(z[i]) * np.linalg.norm(p[k])))
      if y[i] == k:
        sp += math.exp(-alpha * (s - dp))
      else:
        sn += math.exp(alpha * (s - dn))
    total_pos += math.log(1.0 + sp)
    total_neg += math.log(1.0 + sn)
  return total_pos / big_p + total_neg / big_p


def test_proxy_anchor_matches_numpy_loops_and_fd_gradient():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(6, 5))
  p = rng.normal(size=(4, 5))
  y = np.array([0, 0, 1, 2, 2, 1])  # proxy 3 has no positive: still counts in 1/P
  kw = dict(alpha=2.0, scale=1.0)  # small alpha keeps float64 exp finite in the loop version
  got = davpt.proxy_anchor_loss(jnp.asarray(z), jnp.asarray(p), jnp.asarray(y), jnp.ones(6, bool),
                                **kw)
  want = numpy_proxy_anchor(z, p, y, alpha=2.0, r=1.0)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  # default α=32, r=5 on mildly similar inputs, padded row ignored
  z2 = 0.2 * rng.normal(size=(5, 5)) + p[[0, 1, 1, 2, 0]]
  mask = np.array([1, 1, 1, 1, 0], bool)
  got = davpt.proxy_anchor_loss(jnp.asarray(z2), jnp.asarray(p), jnp.asarray([0, 1, 1, 2, 0]),
                                jnp.asarray(mask))
  want = numpy_proxy_anchor(z2[:4], p, [0, 1, 1, 2])
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  # finite differences (float64 numpy reference) vs jax gradient wrt z
  g = jax.grad(lambda zz: davpt.proxy_anchor_loss(zz, jnp.asarray(p), jnp.asarray(y),
                                                  jnp.ones(6, bool), **kw))(jnp.asarray(z))
  eps = 1e-4
  for i, j in [(0, 0), (3, 2), (5, 4)]:
    zp, zm = z.copy(), z.copy()
    zp[i, j] += eps
    zm[i, j] -= eps
    fd = (numpy_proxy_anchor(zp, p, y, 2.0, r=1.0)
          - numpy_proxy_anchor(zm, p, y, 2.0, r=1.0)) / (2 * eps)
    np.testing.assert_allclose(float(g[i, j]), fd, rtol=2e-3, atol=1e-5)


def _prompter(**kw):
  args = dict(width=16, depth=4, num_proxies=3, num_other=2, proxy_start=2, proxy_end=3,
              live_tokens=False)
  args.update(kw)
  return davpt.DAVPTPrompter(**args)


def test_layout_drops_previous_prompts():
  p = _prompter()
  x0 = jnp.arange(2 * 5 * 16, dtype=jnp.float32).reshape(2, 5, 16)
  v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)['params']
  assert v['proxy'].shape == (2, 3, 16) and v['other'].shape == (2, 2, 16)
  x = x0
  for layer, n in enumerate([2, 2, 3, 3]):
    x = p.apply({'params': v}, layer, BlockOutput(x), False, method=p.insert).live
    assert x.shape == (2, 1 + n + 4, 16)
    np.testing.assert_array_equal(x[:, 1 + n:], x0[:, 1:])
    want = v['other'][layer] if layer < 2 else v['proxy'][layer - 2]
    np.testing.assert_array_equal(x[:, 1:1 + n], jnp.broadcast_to(want, (2, n, 16)))
  bound = math.sqrt(6 / (3 * 16 + 2 * 16))
  assert np.abs(v['proxy']).max() <= bound
  assert _prompter(num_other=0).init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False,
                                     method=p.insert)['params'].keys() == {'proxy'}


@pytest.mark.parametrize('anchor', ['input_mean', 'attn_out'])
def test_live_token_layout(anchor):
  """Prompts are key/value-only ([P, D]) except at the last block when the pool reads them and at
  the proxy layers with the 'attn_out' anchor; proxy layers ask the block for its queries."""
  p = _prompter(live_tokens=True, patch_anchor=anchor, mask_prompts=True)
  x0 = jnp.arange(2 * 5 * 16, dtype=jnp.float32).reshape(2, 5, 16)
  v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)['params']
  x = x0
  for layer in range(4):
    block_input = x  # (the previous block's live output, here unchanged by the block)
    t = p.apply({'params': v}, layer, BlockOutput(x), False, method=p.insert)
    proxy = layer >= 2
    assert t.sow == ((('queries', 'attn_out') if anchor == 'attn_out' else ('queries',))
                     if proxy else ())
    if proxy and anchor == 'attn_out':
      assert t.kv is None and t.live.shape == (2, 1 + 3 + 4, 16) and t.mask.shape == (8, 8)
      np.testing.assert_array_equal(t.live[:, 4:], x0[:, 1:])
    else:
      assert t.mask is None and t.kv.shape == (3 if proxy else 2, 16)
      np.testing.assert_array_equal(t.live, x0)
    x = t.live
  t = p.apply({'params': v}, 3, BlockOutput(block_input), False, True,  # the pool reads them
              method=p.insert)
  assert t.kv is None and t.live.shape == (2, 8, 16)


def test_mask_prompt_queries_see_only_image_tokens():
  p = _prompter(mask_prompts=True)
  x0 = jnp.zeros((1, 5, 16))
  v = p.init(jax.random.PRNGKey(0), 0, BlockOutput(x0), False, method=p.insert)
  x1 = jnp.zeros((1, 7, 16))  # block 1's output: CLS + 2 other prompts + 4 patches
  mask = p.apply(v, 2, BlockOutput(x1), False, method=p.insert).mask  # CLS, 3 proxies, 4 patches
  mask = np.asarray(mask)
  assert mask.shape == (8, 8)
  assert mask[0].all() and mask[4:].all()
  assert not mask[1:4, :4].any() and mask[1:4, 4:].all()
  # with the block's attention: prompt rows are invariant to CLS and other prompts' values
  mha = vit.MultiHeadAttention(num_heads=2)
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 8, 16))
  prm = mha.init(jax.random.PRNGKey(2), x, mask=jnp.asarray(mask))
  y0 = mha.apply(prm, x, mask=jnp.asarray(mask))[0]
  x1 = x.at[:, 0].add(3.0).at[:, 2:4].add(-2.0)  # perturb CLS and prompts 2, 3
  y1 = mha.apply(prm, x1, mask=jnp.asarray(mask))[0]
  np.testing.assert_allclose(y0[:, 1], y1[:, 1], atol=1e-5)  # prompt 1 unaffected
  assert not np.allclose(y0[:, 4:], y1[:, 4:])                # image tokens see CLS/prompts
  yu = mha.apply(prm, x1)[0]
  assert not np.allclose(y0[:, 1], yu[:, 1])                  # and without mask prompt 1 moves


def _cfg(**davpt_kw):
  c = micro_config('davpt')
  c.unlock()
  c.davpt = common.davpt(**dict(dict(num_proxies=3, num_other=2, proxy_start=2, proxy_end=3),
                                **davpt_kw))
  c.lock()
  return c


@pytest.mark.parametrize('anchor', ['input_mean', 'attn_out'])
def test_loss_through_model(anchor):
  cfg = _cfg(patch_anchor=anchor, lambda_patch=1.0, lambda_cls=0.5)
  prepared = {'num_proxies': 3, 'class_map': np.array([0, 1, 2, 0, 1], np.int32),
              'centroids': np.eye(3, 64, dtype=np.float32)}
  method = base.get('davpt')
  model = method.build(cfg, 5, prepared)
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(1), images)['params']
  (logits, out), mut = model.apply({'params': params}, images, mutable=['aux'])
  aux = mut['aux']['prompt']
  assert len(aux['proxies']) == 2
  live = 17 if anchor == 'input_mean' else 20  # CLS + patches (+ the 3 proxies for 'attn_out')
  assert vit.sown(mut['aux'], 3, 'queries').shape == (4, live, 4, 16)
  batch = {'image': images, 'label': jnp.array([0, 1, 3, 4]), 'mask': jnp.ones(4, bool)}
  state = method.recipe.init_state(prepared, cfg)
  total, metrics = method.recipe.loss(base.LossInputs(logits, out, mut['aux'], batch, state, cfg))
  assert np.isfinite(float(total))
  want = float(metrics['ce']) + float(metrics['da_patch']) + 0.5 * float(metrics['da_cls'])
  np.testing.assert_allclose(float(total), want, rtol=1e-5)
  m = np.array([0, 1, 0, 1])
  # CLS anchor check at layer 3 against the loss function with explicit inputs
  zc = vit.sown(mut['aux'], 3, 'queries')[:, 0].reshape(4, -1)
  direct = davpt.proxy_anchor_loss(zc, aux['proxies'][1], jnp.asarray(m), jnp.ones(4, bool))
  assert np.isfinite(float(direct))
  with pytest.raises(KeyError):  # missing anchors are an error, never a silent 0
    method.recipe.loss(base.LossInputs(logits, out, {}, batch, state, cfg))


def test_state_accumulates_and_remaps():
  cfg = _cfg(dynamic_kmeans=1)
  prepared = {'num_proxies': 2, 'class_map': np.array([0, 0, 0, 1], np.int32),
              'centroids': np.array([[1, 0, 0], [0, 1, 0]], np.float32)}
  state = davpt.init_state(prepared, cfg)
  feats = jnp.array([[5., 0, 0], [0, 0, 5.], [0, 4., 0], [1., 1, 9]])
  batch = {'label': jnp.array([0, 1, 2, 1]), 'mask': jnp.array([1, 1, 1, 0], bool)}
  step = jax.jit(lambda st, f, b: davpt.update_state(
      st, base.LossInputs(None, {'pre_logits': f}, {}, b, st, cfg)))
  state = step(state, feats, batch)
  np.testing.assert_allclose(state['counts'], [1, 1, 1, 0])
  np.testing.assert_allclose(state['sums'][1], [0, 0, 5])
  new = davpt.epoch_end(jax.device_get(state), 1, cfg)
  assert len(np.unique(new['map'][:3])) == 2
  # The unseen class 3 gets a random cluster at each remap (Noahsark/DA-VPT model_creator.py
  # cosine_kmeans: `torch.randint(k, (zero_classes.sum(),))`), seeded by (seed, epoch).
  unseen = [int(davpt.epoch_end(jax.device_get(state), e, cfg)['map'][3]) for e in range(1, 41)]
  assert set(unseen) == {0, 1} and 10 < sum(unseen) < 30
  again = [int(davpt.epoch_end(jax.device_get(state), e, cfg)['map'][3]) for e in range(1, 41)]
  assert unseen == again
  assert new['counts'].sum() == 0 and new['map'].dtype == np.int32
  early = davpt.epoch_end(jax.device_get(state), 0, _cfg(dynamic_kmeans=5))
  np.testing.assert_array_equal(early['map'], prepared['class_map'])


def test_trainable_set_and_configs():
  from prompt_jax.configs import davpt_vtab
  c = davpt_vtab.get_config('task=dtd,backbone=mae')
  assert c.model.pool == 'norm_mean' and c.init.format == 'mae' and c.data.task == 'dtd'
  c.unlock()
  c.davpt.update(train_k_bias=True, train_norm1=True, train_cls=True)
  cfg = _cfg()
  model = base.get('davpt').build(cfg, 5, None)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  tr, _ = tree.split(params, *base.get('davpt').trainable_patterns(c))
  paths = tree.paths(tr)
  blk = 'Transformer/encoderblock_0/'
  # 'embedding/bias': the release's 'proj.bias' also matches patch_embed.proj.bias.
  for want in ['prompt/proxy', 'head/kernel', 'cls', 'embedding/bias', blk + 'LayerNorm_0/scale',
               blk + 'MultiHeadDotProductAttention_1/key/bias', blk + 'LayerNorm_2/bias',
               blk + 'MultiHeadDotProductAttention_1/value/bias', blk + 'MlpBlock_3/Dense_1/bias',
               blk + 'MultiHeadDotProductAttention_1/out/bias']:
    assert want in paths, want
  for not_want in [blk + 'MultiHeadDotProductAttention_1/query/bias', blk + 'LayerNorm_2/scale',
                   blk + 'MlpBlock_3/Dense_0/bias', 'embedding/kernel']:
    assert not_want not in paths


def test_prepare_and_short_training_run(pretrained_npz, tmp_path):
  from prompt_jax.train import trainer as train
  c = micro_config('davpt', epochs=3, optimizer='adamw', lr=3e-3, lr_scale_by_batch=False,
                   schedule_per='step', cosine_shift=False, warmup_epochs=1, warmup_init=1e-8,
                   grad_clip_value=10.0, eval_every_epochs=3)
  c.unlock()
  c.init.checkpoint = pretrained_npz
  c.model.update(head_init='trunc_normal', head_bias_init=0.0)
  c.davpt = common.davpt(num_proxies=2, num_other=2, proxy_start=3, proxy_end=3,
                         dynamic_kmeans=1, lambda_patch=0.1, lambda_cls=0.1)
  c.lock()
  res = train.train_and_evaluate(c, str(tmp_path))
  assert np.isfinite(res['last_train_loss'])
  assert res['test'] > 0.3, res['test']
  print('DA-VPT digits test accuracy', res['test'], 'val', res['val200'])


def test_proxy_nca_option_matches_numpy():
  rng = np.random.default_rng(4)
  z, p, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), np.array([2, 0, 0])
  un = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  s = 5.0 * un(z) @ un(p).T
  want = np.mean([-s[i, y[i]] + np.log(sum(np.exp(s[i, k]) for k in range(3) if k != y[i]))
                  for i in range(3)])
  got = davpt.proxy_nca_loss(jnp.asarray(z), jnp.asarray(p), jnp.asarray(y), jnp.ones(3, bool))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize('norm', ['none', 'l2', 'layer'])
def test_prompt_norm_applies_before_the_block(norm):
  # The release's forward_features: prompt = vpt_norm(prompt) before it is concatenated.
  p = _prompter(width=64, proxy_start=0, proxy_end=0, prompt_norm=norm)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 17, 64))
  insert = lambda v: p.apply(v, 0, BlockOutput(x), False, method=p.insert).live
  v = p.init(jax.random.PRNGKey(1), 0, BlockOutput(x), False, method=p.insert)
  params = v['params']
  raw = np.asarray(params['proxy'][0])
  if norm == 'layer':  # a trainable affine LayerNorm (under prompt/, trained with the prompts)
    assert set(params['norm']) == {'scale', 'bias'}
    params['norm']['bias'] = params['norm']['bias'] + 0.5
  rows = np.asarray(insert({'params': params}))[:, 1:4]
  want = {'none': raw, 'l2': raw / np.linalg.norm(raw, axis=-1, keepdims=True),
          'layer': (raw - raw.mean(-1, keepdims=True)) / np.sqrt(raw.var(-1, keepdims=True) + 1e-6)
          + 0.5}[norm]
  np.testing.assert_allclose(rows, np.broadcast_to(want, rows.shape), rtol=1e-4, atol=1e-5)
  # the loss sees the same normed proxies
  cfg = _cfg(prompt_norm=norm, proxy_start=0, proxy_end=0)
  prepared = {'num_proxies': 3, 'class_map': np.array([0, 1, 2, 0, 1], np.int32),
              'centroids': np.eye(3, 64, dtype=np.float32)}
  model = base.get('davpt').build(cfg, 5, prepared)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  mp = model.init(jax.random.PRNGKey(1), images)['params']
  _, mut = model.apply({'params': mp}, images, mutable=['aux'])
  want = np.asarray(insert({'params': mp['prompt']}))[0, 1:4]
  np.testing.assert_allclose(np.asarray(mut['aux']['prompt']['proxies'][0]), want, rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize('live_tokens', [True, False])
def test_prompt_dropout_mask_is_per_example(live_tokens):
  cfg = _cfg(dropout=0.5)
  cfg.unlock()
  cfg.model.live_tokens = live_tokens
  prepared = {'num_proxies': 3, 'class_map': np.array([0, 1, 2, 0, 1], np.int32),
              'centroids': np.eye(3, 64, dtype=np.float32)}
  model = base.get('davpt').build(cfg, 5, prepared)
  img = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, 32, 32, 3)), (6, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(1), img)['params']
  out, _ = model.apply({'params': params}, img, train=True, rngs={'dropout': jax.random.PRNGKey(2)})
  out = np.asarray(out)
  assert all(not np.allclose(out[0], out[i]) for i in range(1, 6))


def test_fgvc_configs_set_the_release_prompt_norm():
  from prompt_jax.configs import davpt_fgvc, davpt_vtab
  assert davpt_vtab.get_config('task=dtd,backbone=mae').davpt.prompt_norm == 'none'
  assert davpt_fgvc.get_config('task=cub,backbone=mae').davpt.prompt_norm == 'l2'
  assert davpt_fgvc.get_config('task=stanford_dogs,backbone=mocov3').davpt.prompt_norm == 'none'
