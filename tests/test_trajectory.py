"""Whole training trajectories: each method's default config's `train` section (optimizer, lr
schedule and its stepping, warm-up, weight-decay groups, gradient clipping) against a PyTorch run
built from torch.optim, the release's parameter groups and its lr formula written out here (each
cites the release file it transcribes). Same initial parameters, same 4 batches in fixed order,
10 epochs (2 warm-up) of 4 steps; loss per step and the final parameters must agree.

The model is a fixed smooth function of the trainable tree (leaves named and shaped as the
method's: prompts of rank 3, head kernel, 1-D biases), so only the optimisation is under test;
the method's own forward passes are checked against the releases in tests/methods/.
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from prompt_jax import optim

EPOCHS, WARMUP, STEPS_PER_EPOCH, BATCH, FEATURES, CLASSES = 10, 2, 4, 8, 6, 3

# Trainable leaves per method (path -> shape): the method's kinds of tensors.
TREES = {
    'vpt': {'prompt/prompts': (3, 2, 4), 'head/kernel': (4, CLASSES), 'head/bias': (CLASSES,)},
    'ship': {'prompt/prompts': (3, 2, 4), 'prompt/proj/kernel': (4, 4), 'prompt/proj/bias': (4,),
             'head/kernel': (4, CLASSES), 'head/bias': (CLASSES,)},
    'davpt': {'prompt/prompts': (3, 2, 4), 'prompt/cls': (1, 1, 4), 'head/kernel': (4, CLASSES),
              'head/bias': (CLASSES,)},
    'spt': {'prompt/prompts': (3, 2, 4), 'head/kernel': (4, CLASSES), 'head/bias': (CLASSES,)},
    'sap': {'visual_prompt/ctx': (2, 2, 4), 'text_prompt/ctx': (2, 2, 4),
            'text_prompt/bias': (4,)},
}
CONFIGS = {'vpt': ('vpt_vtab', 'task=cifar100'), 'ship': ('ship_vtab', 'task=cifar100'),
           'davpt': ('davpt_vtab', 'task=cifar100'), 'spt': ('spt_vtab', 'task=cifar100'),
           'sap': ('sap_b2n', 'task=dtd')}


def _train_cfg(method):
  module, arg = CONFIGS[method]
  cfg = importlib.import_module(f'prompt_jax.configs.{module}').get_config(arg).train
  cfg.unlock()
  # SAP keeps its one warm-up epoch: one epoch of linear warm-up is Dassl's constant warm-up.
  cfg.update(epochs=EPOCHS, warmup_epochs=1 if method == 'sap' else WARMUP, batch_size=BATCH)
  return cfg


def _problem(method):
  rng = np.random.default_rng(0)
  params = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in TREES[method].items()}
  proj = {k: rng.normal(0, 1 / math.sqrt(np.prod(s)), (np.prod(s), FEATURES * CLASSES)
                        ).astype(np.float32) for k, s in TREES[method].items()}
  x = rng.normal(size=(STEPS_PER_EPOCH, BATCH, FEATURES)).astype(np.float32)
  y = rng.integers(0, CLASSES, (STEPS_PER_EPOCH, BATCH))
  return params, proj, x, y


def _loss(params, proj, x, y, lib):
  """CE of x @ W, W = sum over leaves of tanh(vec(leaf) @ proj): the same in jnp and torch."""
  w = sum(lib.tanh(params[k].reshape(-1) @ proj[k]) for k in sorted(params))
  logits = x @ w.reshape(FEATURES, CLASSES)
  if lib is torch:
    return torch.nn.functional.cross_entropy(logits, y)
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _run_ours(method):
  cfg = _train_cfg(method)
  params0, proj, x, y = _problem(method)
  params = jax.tree_util.tree_map(jnp.asarray, params0)
  tx, _ = optim.make_optimizer(cfg, params, STEPS_PER_EPOCH)
  state = tx.init(params)
  grad_fn = jax.jit(jax.value_and_grad(lambda p, xb, yb: _loss(p, proj, xb, yb, jnp)))
  losses = []
  for step in range(EPOCHS * STEPS_PER_EPOCH):
    b = step % STEPS_PER_EPOCH
    loss, g = grad_fn(params, x[b], y[b])
    upd, state = tx.update(g, state, params)
    params = optax.apply_updates(params, upd)
    losses.append(float(loss))
  return np.array(losses), {k: np.asarray(v) for k, v in params.items()}


def _run_torch(params0, proj, x, y, groups, make_opt, lr_at, clip_value=0.0):
  """torch.optim run: `groups(named) -> param groups`, lr_at(step) -> the lr of that update."""
  named = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
  opt = make_opt(groups(named))
  tproj = {k: torch.tensor(v) for k, v in proj.items()}
  losses = []
  for step in range(EPOCHS * STEPS_PER_EPOCH):
    b = step % STEPS_PER_EPOCH
    lr = lr_at(step)
    for g in opt.param_groups:
      g['lr'] = lr
    loss = _loss(named, tproj, torch.tensor(x[b]), torch.tensor(y[b]), torch)
    opt.zero_grad()
    loss.backward()
    if clip_value:
      torch.nn.utils.clip_grad_value_(list(named.values()), clip_value)
    opt.step()
    losses.append(loss.item())
  return np.array(losses), {k: v.detach().numpy() for k, v in named.items()}


def _timm_groups(wd, wd_head=None):
  """timm `add_weight_decay` / SPT's and DA-VPT's `param_groups_weight_decay`: no decay for 1-D
  tensors and biases, `wd_head` for the head (SPT utils.py:79-99)."""
  def groups(named):
    no = [p for k, p in named.items() if p.ndim <= 1 or k.endswith('bias')]
    head = [p for k, p in named.items() if k.startswith('head') and p.ndim > 1]
    body = [p for k, p in named.items() if p.ndim > 1 and not k.startswith('head')]
    return [{'params': no, 'weight_decay': 0.0}, {'params': body, 'weight_decay': wd},
            {'params': head, 'weight_decay': wd if wd_head is None else wd_head}]
  return groups


def _timm_cosine(t, *, lr, warmup_lr, min_lr, warmup_t, t_initial):
  """timm CosineLRScheduler._get_lr (warmup_prefix=False, one cycle)."""
  if t < warmup_t:
    return warmup_lr + t * (lr - warmup_lr) / warmup_t
  return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / t_initial))


def _reference(method, cfg):
  params0, proj, x, y = _problem(method)
  spe, epochs, warm = STEPS_PER_EPOCH, EPOCHS, WARMUP
  if method == 'vpt':
    # KMnP/vpt src/solver/optimizer.py: SGD, every param decays but the head bias;
    # src/solver/lr_scheduler.py WarmupCosineSchedule (LambdaLR stepped once per epoch,
    # src/engine/trainer.py): epoch e < warm: lr·e/warm, else cosine over the post-warm-up span.
    lr = cfg.lr * cfg.batch_size / 256

    def lr_at(step):
      e = step // spe
      return lr * (e / warm if e < warm else
                   0.5 * (1 + math.cos(math.pi * (e - warm) / (epochs - warm))))

    def groups(named):
      return [{'params': [p for k, p in named.items() if k != 'head/bias']},
              {'params': [named['head/bias']], 'weight_decay': 0.0}]
    make = lambda g: torch.optim.SGD(g, lr=lr, momentum=0.9, weight_decay=cfg.wd)
    return _run_torch(params0, proj, x, y, groups, make, lr_at)
  if method == 'ship':
    # haoweiz23/SHIP train.py:470 timm create_optimizer (AdamW, eps 1e-8, no decay for 1-D /
    # bias); train.py:482 create_scheduler (cosine, warmup_lr 1e-6, min_lr 1e-5, per epoch) and
    # train.py:532 `lr_scheduler.step(epoch)` AFTER epoch `epoch`: epoch 0 trains at the initial
    # warmup_lr, epoch e >= 1 at _get_lr(e - 1).
    f = lambda t: _timm_cosine(t, lr=cfg.lr, warmup_lr=1e-6, min_lr=1e-5, warmup_t=warm,
                               t_initial=epochs)
    lr_at = lambda step: f(max(step // spe - 1, 0))
    make = lambda g: torch.optim.AdamW(g, lr=cfg.lr, eps=1e-8)
    return _run_torch(params0, proj, x, y, _timm_groups(cfg.wd), make, lr_at)
  if method == 'davpt':
    # Noahsark/DA-VPT train.py:175 `lr_scheduler.step_update(num_updates)` after each update
    # (timm cosine in updates, warmup_lr 1e-8, min_lr 1e-9: configs/vtab/*.yaml), train.py:165
    # clip_grad_value_(10), train.py:349 param_groups_weight_decay (wd / wd_head / none on 1-D).
    f = lambda t: _timm_cosine(t, lr=cfg.lr, warmup_lr=1e-8, min_lr=1e-9, warmup_t=warm * spe,
                               t_initial=epochs * spe)
    make = lambda g: torch.optim.AdamW(g, lr=cfg.lr)
    return _run_torch(params0, proj, x, y, _timm_groups(cfg.wd, cfg.wd_head), make, f,
                      clip_value=10.0)
  if method == 'spt':
    # WangYZ1608/Self-Prompt-Tuning utils.py:64-76 adjust_learning_rate at epoch + step/spe,
    # called before every update (train_MAE.py:455), min_lr 1e-8 (train_MAE.py:619);
    # utils.py:79-99 param_groups_weight_decay; train_MAE.py:312 torch.optim.AdamW.
    def lr_at(step):
      e = step / spe
      if e < warm:
        return cfg.lr * e / warm
      return 1e-8 + (cfg.lr - 1e-8) * 0.5 * (1 + math.cos(math.pi * (e - warm) / (epochs - warm)))
    make = lambda g: torch.optim.AdamW(g, lr=cfg.lr)
    return _run_torch(params0, proj, x, y, _timm_groups(cfg.wd, cfg.wd_head), make, lr_at)
  if method == 'sap':
    # KaiyangZhou/Dassl.pytorch dassl/optim/optimizer.py build_optimizer: SGD (momentum .9,
    # wd 5e-4) over every trainable tensor; dassl/optim/lr_scheduler.py ConstantWarmupScheduler
    # (WARMUP_CONS_LR 1e-5, WARMUP_RECOUNT True) + CosineAnnealingLR(T_max=MAX_EPOCH), stepped
    # after an epoch's last batch (SAP trainers/sap.py:404): epoch 0 at 1e-5, epoch e >= 1 at
    # 0.5·lr·(1 + cos(π·(e-1)/MAX_EPOCH)).
    assert cfg.warmup_epochs == 1  # WARMUP_EPOCH in vit_b16_c2_ep20_batch4_4+4ctx.yaml

    def lr_at(step):
      e = step // spe
      return 1e-5 if e < 1 else 0.5 * cfg.lr * (1 + math.cos(math.pi * (e - 1) / epochs))
    make = lambda g: torch.optim.SGD(g, lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    return _run_torch(params0, proj, x, y, lambda named: list(named.values()), make, lr_at)
  raise ValueError(method)


@pytest.mark.parametrize('method', sorted(TREES))
def test_default_config_trains_the_release_trajectory(method):
  cfg = _train_cfg(method)
  ours_loss, ours = _run_ours(method)
  ref_loss, ref = _reference(method, cfg)
  np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-4, atol=1e-6)
  params0 = _problem(method)[0]
  for k in ref:
    moved = np.abs(ref[k] - params0[k]).max()
    assert moved > 0, k
    err = np.abs(ours[k] - ref[k]).max()
    assert err <= 1e-4 * moved + 1e-7, (k, err, moved)
