import glob
import os

import jax
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.configs import common
from prompt_jax.train import trainer as train
from prompt_jax.methods import inits
from prompt_jax.methods import spt


def test_pooled_prototypes_of_a_hand_built_tensor():
  # 2 images, 7 tokens, D = 1; P = 4 -> w = 7 // 3 = 2: windows [0,2) [2,4) [4,6) + remainder [6,7)
  tok = np.stack([np.arange(7.0), 10 + np.arange(7.0)])[..., None]
  mean = spt.pool_windows(tok, 4, 'mean_pooling')[..., 0]
  np.testing.assert_allclose(mean, [[0.5, 2.5, 4.5, 6.0], [10.5, 12.5, 14.5, 16.0]])
  mx = spt.pool_windows(tok, 4, 'max_pooling')[..., 0]
  np.testing.assert_allclose(mx, [[1, 3, 5, 6], [11, 13, 15, 16]])
  got = spt.prototypes(tok, 4, 'mean_pooling', seed=0)[:, 0]
  assert len(set(got.tolist())) == 4 and set(got.tolist()) <= set(mean.ravel().tolist())
  rnd = spt.prototypes(tok, 3, 'random', seed=0)[:, 0]
  assert set(rnd.tolist()) <= set(tok.ravel().tolist())            # real tokens
  np.testing.assert_array_equal(rnd, spt.prototypes(tok, 3, 'random', seed=0)[:, 0])  # seeded


@pytest.mark.parametrize('kind,fn', [('mean_pooling', np.mean), ('max_pooling', np.max)])
def test_last_window_as_the_release_slices(kind, fn):
  # 196 tokens. The release pools x[:, -(196 % w):] for the last prompt.
  tok = np.random.default_rng(0).normal(size=(2, 196, 3))
  # P = 8: w = 28, 196 % 28 == 0 -> x[:, -0:] = all 196 tokens
  out = spt.pool_windows(tok, 8, kind)
  np.testing.assert_allclose(out[:, -1], fn(tok, axis=1), rtol=1e-6)
  np.testing.assert_allclose(out[:, 6], fn(tok[:, 168:196], axis=1), rtol=1e-6)
  # P = 30: w = 6, 29 windows cover 0..173, 196 % 6 = 4 -> tokens 192..195
  out = spt.pool_windows(tok, 30, kind)
  np.testing.assert_allclose(out[:, -1], fn(tok[:, 192:], axis=1), rtol=1e-6)
  # The option 'remainder' keeps the tokens after the P-1 windows
  rem = spt.pool_windows(tok, 30, kind, last_window='remainder')
  np.testing.assert_allclose(rem[:, -1], fn(tok[:, 174:], axis=1), rtol=1e-6)
  np.testing.assert_allclose(rem[:, :-1], out[:, :-1])
  rem8 = spt.pool_windows(tok, 8, kind, last_window='remainder')
  np.testing.assert_allclose(rem8[:, -1], fn(tok[:, 168:196], axis=1), rtol=1e-6)
  with pytest.raises(ValueError, match='last_window'):
    spt.pool_windows(tok, 8, kind, last_window='other')


def _cfg(method, name, strategy='kmeans', **kw):
  c = micro_config(method, **kw)
  c.unlock()
  c.prompt_init.name = name
  c.prompt_init.update(strategy=strategy, fraction=0.2, seed=0)
  c.vpt.num_prompts = 4
  c.lock()
  return c


def _nearest_cos(prompts, tokens):
  p = prompts / np.linalg.norm(prompts, axis=-1, keepdims=True)
  t = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
  return (p @ t.T).max(1).mean()


def test_kmeans_prompts_lie_in_the_token_distribution(pretrained_npz, tmp_path):
  cfg = _cfg('vpt', 'spt')   # any method: the 'spt' initialiser on VPT-deep
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  cfg.lock()
  setup = train.build(cfg, str(tmp_path))
  prompts = np.asarray(setup.params['prompt']['prompts'])
  assert prompts.shape == (4, 4, 64)
  tokens, _ = setup.ctx.features('train800', lambda l, o: (o['patch_embed'], o['blocks'][1][:, 1:]),
                                 max_examples=40)
  uniform = np.asarray(inits.uniform(0.2)(jax.random.PRNGKey(0), (4, 64)))
  for row, level_tokens in [(0, tokens[0]), (2, tokens[1])]:
    flat = level_tokens.reshape(-1, 64)
    ours, base_cos = _nearest_cos(prompts[row], flat), _nearest_cos(uniform, flat)
    assert ours > base_cos + 0.3, (row, ours, base_cos)
  cached = sorted(f for f in os.listdir(tmp_path) if f.startswith('spt_kmeans'))
  assert len(cached) == 4 and int(np.load(tmp_path / cached[0])['seed']) == 0
  again = train.build(cfg, str(tmp_path))  # served from the npz cache, identical
  np.testing.assert_array_equal(np.asarray(again.params['prompt']['prompts']), prompts)


def test_spt_method_shallow_uses_level0_and_trains(pretrained_npz, tmp_path):
  cfg = _cfg('spt', 'default', strategy='mean_pooling', epochs=1)
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  cfg.vpt.deep = False
  cfg.lock()
  setup = train.build(cfg, str(tmp_path / 'b'))
  p = np.asarray(setup.params['prompt']['prompts'])
  np.testing.assert_allclose(p, setup.prepared['prompt/prompts'])
  assert p.shape == (1, 4, 64) and len(glob.glob(
      str(tmp_path / 'b' / 'spt_mean_pooling_release_P4_L0_s0_f0.2_*.npz'))) == 1
  res = train.train_and_evaluate(cfg, str(tmp_path / 'r'))
  assert np.isfinite(res['last_train_loss'])


@pytest.mark.slow
def test_spt_initialiser_fills_davpt_prompts(pretrained_npz, tmp_path):
  cfg = _cfg('davpt', 'spt', strategy='random')
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  cfg.davpt = common.davpt(num_proxies=3, num_other=2, proxy_start=3, proxy_end=3)
  cfg.lock()
  setup = train.build(cfg, str(tmp_path))
  assert setup.prepared['num_proxies'] == 3
  proxy = np.asarray(setup.params['prompt']['proxy'])
  other = np.asarray(setup.params['prompt']['other'])
  cached = lambda name: np.load(glob.glob(str(tmp_path / name))[0])['prototypes']
  np.testing.assert_array_equal(proxy[0], cached('spt_random_P3_L3_s0_f0.2_*.npz'))
  np.testing.assert_array_equal(other[2], cached('spt_random_P2_L2_s0_f0.2_*.npz'))
  # Another backbone never reuses these token prototypes.
  cfg.init.checkpoint = 'random'
  again = train.build(cfg, str(tmp_path))
  assert len(glob.glob(str(tmp_path / 'spt_random_P3_L3_s0_f0.2_*.npz'))) == 2
  assert not np.array_equal(np.asarray(again.params['prompt']['proxy']), proxy)


def test_configs_load():
  from prompt_jax.configs import davpt_fgvc, davpt_vtab, spt_vtab
  for arg, pool, std in [('backbone=mae', 'mean_norm', 0.02),
                         ('deep=False,backbone=mocov3', 'cls', 0.01),
                         ('dtd,backbone=sup21k', 'cls', 0.02)]:
    c = spt_vtab.get_config(arg)
    assert c.method == 'spt' and c.model.pool == pool and c.model.head_init_std == std
    assert c.vpt.num_prompts == (100 if 'deep=False' in arg else 20)
    assert c.prompt_init.strategy == 'kmeans' and c.prompt_init.fraction == 0.3
  for mod in (davpt_vtab, davpt_fgvc):
    c = mod.get_config('backbone=mocov3')
    assert c.data.sampler == 'class_balanced' and c.train.grad_clip_value == 10.0
    assert c.train.schedule_per == 'step' and not c.train.cosine_shift
  try:
    c.davpt.unknown_key = 1
    raise AssertionError('config should be locked')
  except AttributeError:
    pass
