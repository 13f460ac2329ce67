"""Whole training trajectories: each method's default config's `train` section (optimizer, lr
schedule and its stepping, warm-up, weight-decay groups, gradient clipping) against a PyTorch run
built from torch.optim, the release's parameter groups and its lr formula written out here (each
cites the release file it transcribes). Same initial parameters, same 4 batches in fixed order,
10 epochs (2 warm-up) of 4 steps; loss per step and the final parameters must agree.

The trainable tree is the method's own: its model (Mu/8 ViT, SAP a tiny CLIP) built from the config
and split by the method's trainable patterns, so which parameters train and their names and shapes
(prompts, head, DA-VPT's cls / norm1 / attention biases from its recipe flags, SAP's 1-D bias) are
the real ones. The loss is a fixed smooth function of that tree, so only the optimisation is under
test; the methods' own forward passes are checked against the releases in tests/methods/.
"""

import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_jax.train import optim
from prompt_jax.util import tree
from prompt_jax.methods import base
from prompt_jax.models import clip

torch = pytest.importorskip('torch', reason='the trajectories are compared against torch.optim')

EPOCHS, WARMUP, STEPS_PER_EPOCH, BATCH, FEATURES, CLASSES = 10, 2, 4, 8, 6, 3

# DA-VPT on the supervised backbone: its cifar100 recipe trains cls, norm1 and the k / v biases.
CONFIGS = {'vpt': ('vpt_vtab', 'task=cifar100'), 'ship': ('ship_vtab', 'task=cifar100'),
           'davpt': ('davpt_vtab', 'task=cifar100,backbone=sup21k'),
           'spt': ('spt_vtab', 'task=cifar100'), 'sap': ('sap_b2n', 'task=dtd')}
TINY_CLIP = dict(embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=2,
                 vision_heads=4, context_length=40, vocab_size=560, text_width=32, text_layers=2,
                 text_heads=4)


def _config(method):
  module, arg = CONFIGS[method]
  return importlib.import_module(f'prompt_jax.configs.{module}').get_config(arg)


@functools.cache
def _tree(method):
  """{path: shape} of the trainable params of the method's model on the config."""
  c = _config(method)
  c.unlock()
  c.data.image_size = 32
  prepared = None
  if method == 'sap':
    clip.VARIANTS['test_tiny/8'] = TINY_CLIP
    c.model.variant, c.sap.depth = 'test_tiny/8', 2
    m, e = 6, TINY_CLIP['embed_dim']
    prepared = {'ids': np.ones((m, TINY_CLIP['context_length']), np.int32),
                'owner': np.arange(m, dtype=np.int32) % CLASSES,
                'desc_feats': np.ones((m, e), np.float32),
                'zs_text': np.ones((CLASSES, e), np.float32), 'num_classes': CLASSES}
  else:
    c.model.variant = 'Mu/8'
  if method == 'davpt':
    c.davpt.update(proxy_start=3, proxy_end=3)  # the last block of Mu/8
  if method == 'ship':
    prepared = {'anchors': np.array([0, 2]), 'bank': np.zeros((8, 64), np.float32)}
  m = base.get(c.method)
  shapes = jax.eval_shape(m.build(c, CLASSES, prepared).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 32, 32, 3)))['params']
  trainable, _ = tree.split(shapes, *m.trainable_patterns(c))
  return {k: tuple(v.shape) for k, v in tree.flat(trainable).items()}


def test_trainable_trees_are_the_methods():
  davpt = _tree('davpt')
  blk = 'Transformer/encoderblock_0/'
  for want in ('cls', 'head/kernel', 'prompt/proxy', blk + 'LayerNorm_0/scale',
               blk + 'MultiHeadDotProductAttention_1/key/bias'):
    assert want in davpt, want
  assert davpt[blk + 'MultiHeadDotProductAttention_1/key/bias'] == (4, 16)  # rank 2, a bias
  assert any(k.endswith('bias') and len(s) == 1 for k, s in _tree('sap').items())
  assert set(_tree('vpt')) == {'prompt/prompts', 'head/kernel', 'head/bias'}


def _train_cfg(method):
  cfg = _config(method).train
  cfg.unlock()
  # SAP keeps its one warm-up epoch: one epoch of linear warm-up is Dassl's constant warm-up.
  cfg.update(epochs=EPOCHS, warmup_epochs=1 if method == 'sap' else WARMUP, batch_size=BATCH)
  return cfg


def _problem(method):
  rng = np.random.default_rng(0)
  shapes = _tree(method)
  params = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}
  proj = {k: rng.normal(0, 1 / math.sqrt(np.prod(s)), (np.prod(s), FEATURES * CLASSES)
                        ).astype(np.float32) for k, s in shapes.items()}
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
  params = tree.nest({k: jnp.asarray(v) for k, v in params0.items()})
  tx, _ = optim.make_optimizer(cfg, params, STEPS_PER_EPOCH)
  state = tx.init(params)
  grad_fn = jax.value_and_grad(lambda p, xb, yb: _loss(tree.flat(p), proj, xb, yb, jnp))

  @jax.jit
  def step_fn(params, state, xb, yb):
    loss, g = grad_fn(params, xb, yb)
    upd, state = tx.update(g, state, params)
    return optax.apply_updates(params, upd), state, loss

  losses = []
  for step in range(EPOCHS * STEPS_PER_EPOCH):
    b = step % STEPS_PER_EPOCH
    params, state, loss = step_fn(params, state, x[b], y[b])
    losses.append(float(loss))
  return np.array(losses), {k: np.asarray(v) for k, v in tree.flat(params).items()}


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


def _torch_ndim(k, p):
  """The rank of the release's tensor: our [heads, head_dim] attention biases are 1-D in torch."""
  return 1 if k.endswith('bias') else p.ndim


def _timm_groups(wd, wd_head=None):
  """timm `add_weight_decay` / SPT's and DA-VPT's `param_groups_weight_decay`: no decay for 1-D
  tensors and biases, `wd_head` for the head (SPT utils.py:79-99)."""
  def groups(named):
    no = [p for k, p in named.items() if _torch_ndim(k, p) <= 1]
    head = [p for k, p in named.items() if k.startswith('head') and _torch_ndim(k, p) > 1]
    body = [p for k, p in named.items() if _torch_ndim(k, p) > 1 and not k.startswith('head')]
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


@pytest.mark.parametrize('method', sorted(CONFIGS))
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
