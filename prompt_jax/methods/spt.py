"""SPT (self-prompt tuning), spec 04: prompts initialised with downstream token prototypes.

Two entry points:
  * the prompt initialiser 'spt' (`config.prompt_init.name='spt'`): fills every prompt tensor the
    method lists in `prompt_slots` ({param path: levels}, row r of the tensor <- level levels[r]);
  * the method 'spt': VPT's layout ([CLS, P prompts, patches], `config.vpt`) whose own init is SPT
    (computed in `prepare`, written in `init_params`), so `prompt_init.name` stays 'default'.

Levels come from the frozen prompt-free backbone on the training images: level 0 = patch-embedding
output (before CLS / position embedding), level i >= 1 = output of block i-1 without CLS;
[N, N_p, D].
Strategies (`config.prompt_init.strategy`):
  'random'        P random real tokens out of all N·N_p;
  'mean_pooling' / 'max_pooling'  w = N_p // (P-1): P-1 contiguous raster windows plus the remainder
                  window, pooled, then P random rows of the P·N pooled vectors;
  'kmeans'        P euclidean k-means centres (k-means++ init) of the tokens of the first
                  ceil(fraction·N) training images (the paper's main method; the release reads
                  precomputed centres).
`fraction` limits the images used by every strategy (kmeans default 0.3). Everything is seeded by
`prompt_init.seed`; results are cached in the workdir as
spt_<strategy>_P<P>_L<level>_s<seed>_f<f>.npz
holding the prototypes and the seed.
"""

from __future__ import annotations

import math
import os
from typing import Any

from absl import logging
from flax import traverse_util
import jax.numpy as jnp
import numpy as np

from prompt_jax.methods import base
from prompt_jax.methods import kmeans
from prompt_jax.methods import vpt

Array = Any
STRATEGIES = ('random', 'mean_pooling', 'max_pooling', 'kmeans')


def level_tokens(out: dict[str, Array], level: int) -> Array:
  """[B, N_p, D] tokens of `level` from the backbone's aux output."""
  if level == 0:
    return out['patch_embed']
  return out['blocks'][level - 1][:, 1:]


def pool_windows(tokens: np.ndarray, num_prompts: int, kind: str) -> np.ndarray:
  """[N, N_p, D] -> [N, P, D]: P-1 contiguous windows of w = N_p // (P-1) tokens in raster order
  plus the remainder window (tokens (P-1)·w ..), each mean- or max-pooled. With P = 1 the whole
  image is one window. An empty remainder (N_p divisible) reuses the last full window."""
  n_p = tokens.shape[1]
  fn = {'mean_pooling': np.mean, 'max_pooling': np.max}[kind]
  if num_prompts == 1:
    return fn(tokens, axis=1, keepdims=True)
  w = n_p // (num_prompts - 1)
  if w == 0:
    raise ValueError(f'{num_prompts} prompts need at least {num_prompts - 1} tokens per image')
  bounds = [(j * w, (j + 1) * w) for j in range(num_prompts - 1)]
  last = (num_prompts - 1) * w
  bounds.append((last, n_p) if last < n_p else bounds[-1])
  return np.stack([fn(tokens[:, a:b], axis=1) for a, b in bounds], axis=1)


def prototypes(tokens: np.ndarray, num_prompts: int, strategy: str, seed: int) -> np.ndarray:
  """[N, N_p, D] tokens of one level -> [P, D] prompt prototypes."""
  rng = np.random.default_rng(seed)
  tokens = np.asarray(tokens, np.float32)
  flat = tokens.reshape(-1, tokens.shape[-1])
  if strategy == 'random':
    return flat[rng.choice(len(flat), size=num_prompts, replace=False)]
  if strategy in ('mean_pooling', 'max_pooling'):
    pooled = pool_windows(tokens, num_prompts, strategy).reshape(-1, tokens.shape[-1])
    return pooled[rng.choice(len(pooled), size=num_prompts, replace=False)]
  if strategy == 'kmeans':
    return kmeans.euclidean_kmeans(flat, num_prompts, seed=seed)
  raise ValueError(f'unknown SPT strategy {strategy!r}; known: {STRATEGIES}')


def level_prototypes(ctx: base.PrepareContext, level: int, num_prompts: int) -> np.ndarray:
  """[P, D] prototypes of one level (cached in the workdir)."""
  pi = ctx.config.prompt_init
  strategy, fraction, seed = pi.strategy, float(pi.fraction), int(pi.seed)
  name = f'spt_{strategy}_P{num_prompts}_L{level}_s{seed}_f{fraction}.npz'
  path = os.path.join(ctx.workdir, name)
  if os.path.exists(path):
    return np.load(path)['prototypes']
  split = ctx.config.data.train_split
  n = ctx.source.splits[split]
  keep = max(1, math.ceil(fraction * n))
  tokens, _ = ctx.features(split, lambda l, o: level_tokens(o, level),
                           batch_size=int(pi.batch_size), max_examples=keep)
  protos = prototypes(tokens, num_prompts, strategy, seed + 1000 * level)
  os.makedirs(ctx.workdir, exist_ok=True)
  np.savez(path, prototypes=protos, seed=seed, level=level, strategy=strategy, fraction=fraction,
           num_images=keep)
  logging.info('SPT %s level %d: %d prototypes from %d images -> %s', strategy, level,
               num_prompts, keep, path)
  return protos


def compute(ctx: base.PrepareContext, shapes: dict[str, tuple[int, ...]],
            slots: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """{param path: [L, P, D] prompt tensor} for each slot path (shape from `shapes`)."""
  out = {}
  for path, levels in slots.items():
    l, p, d = shapes[path]
    if len(levels) != l:
      raise ValueError(f'{path}: {l} rows but {len(levels)} levels')
    rows = [level_prototypes(ctx, lv, p) for lv in levels]
    if rows[0].shape[-1] != d:
      raise ValueError(f'{path}: prompt dim {d} != token dim {rows[0].shape[-1]} (projected '
                       'prompts cannot take SPT init)')
    out[path] = np.stack(rows).astype(np.float32)
  return out


def _write(params: Any, values: dict[str, np.ndarray]) -> Any:
  flat = traverse_util.flatten_dict(params, sep='/')
  for path, v in values.items():
    if path not in flat:
      raise KeyError(f'SPT: no param {path!r}; have {sorted(k for k in flat if "prompt" in k)}')
    if tuple(flat[path].shape) != v.shape:
      raise ValueError(f'SPT: {path} has shape {flat[path].shape}, prototypes {v.shape}')
    flat[path] = jnp.asarray(v, flat[path].dtype)
  return traverse_util.unflatten_dict(flat, sep='/')


@base.register_initializer('spt')
def spt_initializer(params: Any, ctx: base.PrepareContext, slots: dict[str, tuple[int, ...]],
                    config: base.Config) -> Any:
  """Overwrites each prompt tensor in `slots` with token prototypes of its levels."""
  del config
  flat = traverse_util.flatten_dict(params, sep='/')
  shapes = {k: tuple(flat[k].shape) for k in slots if k in flat}
  missing = set(slots) - set(shapes)
  if missing:
    raise KeyError(f'SPT: prompt slots {sorted(missing)} are not params')
  return _write(params, compute(ctx, shapes, slots))


# ---------------------------------------------------------------- the 'spt' method (VPT + SPT init)


def _vpt_shapes(config: base.Config) -> dict[str, tuple[int, ...]]:
  from prompt_jax.models import vit
  arch = vit.decode_variant(config.model.variant)
  v = config.vpt
  if v.project_dim:
    raise ValueError('SPT needs vpt.project_dim = 0 (prompts live in the token space)')
  return {'prompt/prompts': (arch['depth'] if v.deep else 1, v.num_prompts, arch['width'])}


def prepare(ctx: base.PrepareContext) -> dict[str, np.ndarray]:
  cfg = ctx.config
  return compute(ctx, _vpt_shapes(cfg), vpt.prompt_slots(cfg, None))


def init_params(params: Any, prepared: dict[str, np.ndarray], config: base.Config) -> Any:
  del config
  return _write(params, prepared)


def variant(config: base.Config) -> str:
  """'spt_{deep|shallow}_{strategy}', e.g. 'spt_deep_kmeans'."""
  return f"spt_{'deep' if config.vpt.deep else 'shallow'}_{config.prompt_init.strategy}"


SPT = base.register(base.Method(name='spt', build_prompter=vpt.build_prompter, prepare=prepare,
                                init_params=init_params, prompt_slots=vpt.prompt_slots,
                                variant=variant))
