"""The jitted train step: padding rows of a batch (train.drop_last=False pads the last partial
batch to the static batch shape) change neither the loss, the update nor the method state."""

import jax
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.train import optim
from prompt_jax.train import steps
from prompt_jax.train import trainer as train
from prompt_jax.util import tree
from prompt_jax.configs import common


def _config(method):
  c = micro_config(method)
  c.unlock()
  if method == 'ship':
    c.ship = common.ship(num_prompts=4, threshold=0.9, num_prototypes=8, kmeans_n_init=1,
                         max_images=64)
  if method == 'davpt':
    c.davpt = common.davpt(num_proxies=3, num_other=2, proxy_start=3, proxy_end=3,
                           lambda_patch=1.0, lambda_cls=1.0)
  c.lock()
  return c


# CE alone (vpt; linear and spt use the same loss), SHIP's matching loss, DA-VPT's proxy-anchor
# losses and class statistics (SAP: tests/methods/test_sap.py).
@pytest.mark.slow
@pytest.mark.parametrize('method', ['vpt', 'ship', 'davpt'])
def test_padding_rows_change_nothing(method, tmp_path):
  cfg = _config(method)
  setup = train.build(cfg, str(tmp_path))
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, _ = optim.make_optimizer(cfg.train, trainable, 10)
  state = steps.initial_state(trainable, tx, setup.method.recipe, setup.prepared, cfg,
                              jax.random.PRNGKey(0))
  step = jax.jit(steps.make_train_step(setup.model, setup.method.recipe, cfg, tx))
  real = next(setup.source.iterate('train800', 12, shuffle_seed=0))
  rng = np.random.default_rng(0)
  pad = 20  # garbage rows: large random images, random labels, mask False
  padded = {'image': np.concatenate([real['image'], 5 * rng.normal(size=(pad, 32, 32, 3))]),
            'label': np.concatenate([real['label'], rng.integers(0, 5, pad)]).astype(np.int32),
            'mask': np.concatenate([real['mask'], np.zeros(pad, bool)])}
  padded['image'] = padded['image'].astype(np.float32)
  a, ma = step(state, frozen, real)
  b, mb = step(state, frozen, padded)
  for k in ma:
    np.testing.assert_allclose(float(ma[k]), float(mb[k]), rtol=2e-5, atol=1e-6, err_msg=k)
  close = lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4,
                                                  atol=1e-6)
  jax.tree_util.tree_map(close, a['trainable'], b['trainable'])
  jax.tree_util.tree_map(close, a['method_state'], b['method_state'])
