"""Optimizers and learning-rate schedules over the TRAINABLE subtree only.

Weight-decay groups (by param path and rank): tensors of rank >= 2 get `wd`, the head kernel gets
`wd_head` (= wd when negative), biases (any path ending in `bias`, also the [heads, head_dim]
attention biases that are 1-D `.bias` tensors in PyTorch) / LayerNorm params / other 1-D tensors
get none (so the head bias never decays; timm / SPT / DA-VPT / SHIP), or `wd` with `decay_1d=True`
(Dassl's SGD over every trainable tensor: SAP). SGD uses coupled L2 (added to the gradient before
momentum, as torch.optim.SGD); AdamW uses decoupled decay scaled by the learning rate (as
torch.optim.AdamW).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from prompt_jax.util import tree


def peak_lr(cfg: ml_collections.ConfigDict) -> float:
  """lr, or lr·batch/256 with `lr_scale_by_batch` (VPT's convention)."""
  return cfg.lr * cfg.batch_size / 256.0 if cfg.lr_scale_by_batch else cfg.lr


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up from `warmup_init` then cosine to `min_lr`.

  schedule_per='epoch': the lr changes once per epoch (VPT, SHIP, SAP); 'step': every update
  (DA-VPT, SPT).
  cosine_shift=True: cosine runs over the post-warm-up span (VPT, SPT); False: over the absolute
  position in [0, total] with warm-up overriding its start (timm / DA-VPT / SHIP).
  warmup_recount=True (with cosine_shift): the cosine restarts after warm-up and runs over all
  `epochs`, cos(π·(t - warm)/total) (Dassl's WARMUP_RECOUNT: SAP).
  schedule_lag_epochs=k: epoch e trains at the schedule's lr(max(e - k, 0)) (SHIP: timm's
  `scheduler.step(epoch)` called after epoch e, so epochs 0 and 1 both train at lr(0)).
  """
  base_lr = peak_lr(cfg)
  per_epoch = cfg.schedule_per == 'epoch'
  if cfg.schedule_per not in ('epoch', 'step'):
    raise ValueError(f"train.schedule_per must be 'epoch' or 'step', got {cfg.schedule_per!r}")
  if cfg.warmup_recount and not cfg.cosine_shift:
    raise ValueError('train.warmup_recount=True restarts the cosine after warm-up; it needs '
                     'train.cosine_shift=True')
  if cfg.schedule_lag_epochs < 0:
    raise ValueError(f'train.schedule_lag_epochs must be >= 0, got {cfg.schedule_lag_epochs}')
  unit = 1 if per_epoch else steps_per_epoch
  total = cfg.epochs * unit
  warm = cfg.warmup_epochs * unit
  lag = cfg.schedule_lag_epochs * unit

  def schedule(step):
    t = (step // steps_per_epoch) if per_epoch else step
    t = jnp.maximum(jnp.asarray(t, jnp.float32) - lag, 0.0)
    warm_lr = cfg.warmup_init + (base_lr - cfg.warmup_init) * t / max(warm, 1)
    if cfg.warmup_recount:
      progress = (t - warm) / max(total, 1)
    elif cfg.cosine_shift:
      progress = (t - warm) / max(total - warm, 1)
    else:
      progress = t / max(total, 1)
    progress = jnp.clip(progress, 0.0, 1.0)
    cos_lr = cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1.0 + jnp.cos(math.pi * progress))
    return jnp.where(t < warm, warm_lr, cos_lr)

  return schedule


def decay_masks(params: Any, decay_1d: bool = False) -> tuple[Any, Any]:
  """(mask for `wd`, mask for `wd_head`) as pytrees of bools matching `params`."""
  paths = tree.paths(params)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  is_head_kernel = [p == 'head/kernel' for p in paths]
  no_decay = [l.ndim < 2 or p.endswith('bias') for l, p in zip(leaves, paths)]
  body = [(decay_1d or not n) and not h for n, h in zip(no_decay, is_head_kernel)]
  return (jax.tree_util.tree_unflatten(treedef, body),
          jax.tree_util.tree_unflatten(treedef, is_head_kernel))


def make_optimizer(cfg: ml_collections.ConfigDict, params: Any, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax chain for `config.train` over the trainable `params`."""
  schedule = make_schedule(cfg, steps_per_epoch)
  body_mask, head_mask = decay_masks(params, cfg.decay_1d)
  wd_head = cfg.wd if cfg.wd_head < 0 else cfg.wd_head
  parts = []
  if cfg.grad_clip_value > 0:
    parts.append(optax.clip(cfg.grad_clip_value))
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  decay = [optax.add_decayed_weights(cfg.wd, body_mask),
           optax.add_decayed_weights(wd_head, head_mask)]
  if cfg.optimizer == 'sgd':
    parts += decay + [optax.sgd(schedule, momentum=cfg.momentum or None)]
  elif cfg.optimizer == 'adamw':
    parts += [optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)] + decay + [
        optax.scale_by_learning_rate(schedule)]
  else:
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: 'sgd', 'adamw'")
  return optax.chain(*parts), schedule
