import jax.numpy as jnp
import numpy as np
import pytest

from prompt_jax.configs import common
from prompt_jax.train import optim


def _train_cfg(**kw):
  c = common.base().train
  c.update(dict(dict(lr=1.0, batch_size=256, epochs=10, warmup_epochs=2, warmup_init=0.0,
                     min_lr=0.0, lr_scale_by_batch=True), **kw))
  return c


def test_lr_scaled_by_batch():
  assert optim.peak_lr(_train_cfg(lr=0.5, batch_size=128)) == pytest.approx(0.25)
  assert optim.peak_lr(_train_cfg(lr=0.5, batch_size=128, lr_scale_by_batch=False)) == 0.5


def test_per_epoch_schedule_is_constant_within_an_epoch_and_shifted_cosine():
  s = optim.make_schedule(_train_cfg(schedule_per='epoch', cosine_shift=True), steps_per_epoch=4)
  lrs = np.array([float(s(i)) for i in range(40)])
  np.testing.assert_allclose(lrs[:4], 0.0)               # epoch 0 of warm-up
  np.testing.assert_allclose(lrs[4:8], 0.5)              # epoch 1: 1/2 of peak
  np.testing.assert_allclose(lrs[8], 1.0)                # cosine starts at the peak after warm-up
  assert len(set(lrs[8:12])) == 1
  np.testing.assert_allclose(lrs[12], 0.5 * (1 + np.cos(np.pi * 1 / 8)), rtol=1e-6)


def test_unshifted_per_step_cosine_with_warmup_init():
  cfg = _train_cfg(schedule_per='step', cosine_shift=False, warmup_init=1e-6, min_lr=1e-5,
                   lr_scale_by_batch=False)
  s = optim.make_schedule(cfg, steps_per_epoch=10)
  assert float(s(0)) == pytest.approx(1e-6)
  t = 50
  want = 1e-5 + 0.5 * (1 - 1e-5) * (1 + np.cos(np.pi * t / 100))
  assert float(s(t)) == pytest.approx(want, rel=1e-5)


def test_weight_decay_groups_spare_biases_and_use_wd_head():
  params = {'prompt': {'prompts': jnp.ones((2, 3, 4))}, 'head': {'kernel': jnp.ones((4, 2)),
                                                                 'bias': jnp.ones((2,))}}
  body, head = optim.decay_masks(params)
  assert body == {'prompt': {'prompts': True}, 'head': {'kernel': False, 'bias': False}}
  assert head == {'prompt': {'prompts': False}, 'head': {'kernel': True, 'bias': False}}
  tx, _ = optim.make_optimizer(_train_cfg(optimizer='sgd', momentum=0.0, wd=0.1, wd_head=0.5,
                                          warmup_epochs=0, lr_scale_by_batch=False), params, 1)
  zeros = {'prompt': {'prompts': jnp.zeros((2, 3, 4))}, 'head': {'kernel': jnp.zeros((4, 2)),
                                                                 'bias': jnp.zeros((2,))}}
  upd, _ = tx.update(zeros, tx.init(params), params)
  # Coupled L2 with lr 1: update = -wd * param.
  np.testing.assert_allclose(upd['prompt']['prompts'], -0.1)
  np.testing.assert_allclose(upd['head']['kernel'], -0.5)
  np.testing.assert_allclose(upd['head']['bias'], 0.0)


def test_schedule_lag_repeats_the_first_epoch():
  cfg = _train_cfg(schedule_per='epoch', cosine_shift=False, warmup_init=1e-6, min_lr=1e-5,
                   lr_scale_by_batch=False, schedule_lag_epochs=1)
  lagged = optim.make_schedule(cfg, steps_per_epoch=3)
  cfg.schedule_lag_epochs = 0
  plain = optim.make_schedule(cfg, steps_per_epoch=3)
  assert float(lagged(0)) == float(lagged(3)) == pytest.approx(1e-6)   # epochs 0 and 1
  for e in range(1, 10):
    assert float(lagged(3 * e + 2)) == pytest.approx(float(plain(3 * (e - 1))), rel=1e-6)


def test_warmup_recount_restarts_the_cosine_over_all_epochs():
  cfg = _train_cfg(schedule_per='epoch', warmup_epochs=1, warmup_init=1e-5, lr=0.0025,
                   lr_scale_by_batch=False, epochs=20, warmup_recount=True)
  s = optim.make_schedule(cfg, steps_per_epoch=2)
  assert float(s(0)) == pytest.approx(1e-5)
  for e in range(1, 20):   # Dassl: 0.5·lr·(1 + cos(π(e-1)/E))
    assert float(s(2 * e)) == pytest.approx(0.5 * 0.0025 * (1 + np.cos(np.pi * (e - 1) / 20)),
                                            rel=1e-5)
  with pytest.raises(ValueError, match='cosine_shift'):
    optim.make_schedule(_train_cfg(warmup_recount=True, cosine_shift=False), 2)


def test_decay_1d_decays_biases_too():
  params = {'prompt': {'bias': jnp.ones((4,))}, 'head': {'kernel': jnp.ones((4, 2))}}
  body, head = optim.decay_masks(params, decay_1d=True)
  assert body == {'prompt': {'bias': True}, 'head': {'kernel': False}}
  assert optim.decay_masks(params)[0] == {'prompt': {'bias': False}, 'head': {'kernel': False}}


def test_attention_biases_of_rank_two_do_not_decay():
  # [heads, head_dim] q/k/v biases are 1-D `.bias` tensors in the PyTorch releases (no decay).
  params = {'blk': {'key': {'bias': jnp.ones((4, 16)), 'kernel': jnp.ones((64, 4, 16))}}}
  body, _ = optim.decay_masks(params)
  assert body == {'blk': {'key': {'bias': False, 'kernel': True}}}
  assert optim.decay_masks(params, decay_1d=True)[0]['blk']['key']['bias']
