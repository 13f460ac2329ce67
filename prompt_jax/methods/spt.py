"""SPT (self-prompt tuning), docs/specs/04-spt-sap.md: prompts initialised with downstream token
prototypes.

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
  'mean_pooling' / 'max_pooling'  w = N_p // (P-1): P-1 contiguous raster windows plus a last
                  window (`prompt_init.last_window`: 'release' = the last N_p % w tokens, all
                  N_p when that is 0, as the release slices; 'remainder' = the tokens after the
                  P-1 windows), pooled, then P random rows of the P·N pooled vectors;
  'kmeans'        P euclidean k-means centres (k-means++ init) of the tokens of the first
                  ceil(fraction·N) training images (the paper's main method; the release reads
                  precomputed centres).
`fraction` limits the images used by every strategy (kmeans default 0.3). Everything is seeded by
`prompt_init.seed`; results are cached in the workdir as
spt_<strategy>[_<last_window>]_P<P>_L<level>_s<seed>_f<f>_<key>.npz
holding the prototypes and the seed, where <key> hashes what the tokens depend on (the backbone
digest, `base.FEATURE_KEYS`, `prompt_init.batch_size`): another backbone or data never reuses them.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

from absl import logging
from flax import traverse_util
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import progress
from prompt_jax.util import checks
from prompt_jax.methods import base
from prompt_jax.methods import torch_names
from prompt_jax.methods import kmeans
from prompt_jax.methods import vpt

Array = Any
STRATEGIES = ('random', 'mean_pooling', 'max_pooling', 'kmeans')


def level_tokens(out: dict[str, Array], level: int) -> Array:
  """[B, N_p, D] tokens of `level` from the backbone's aux output."""
  if level == 0:
    return out['patch_embed']
  return out['blocks'][level - 1][:, 1:]


def pool_windows(tokens: np.ndarray, num_prompts: int, kind: str,
                 last_window: str = 'release') -> np.ndarray:
  """[N, N_p, D] -> [N, P, D]: P-1 contiguous windows of w = N_p // (P-1) tokens in raster order
  plus a last window, each mean- or max-pooled. With P = 1 the whole image is one window.

  last_window='release' (the release's `x[:, -(N_p % w):]`): the last N_p % w tokens, ALL N_p
  tokens when N_p % w == 0 (`x[:, -0:]`); e.g. N_p=196, P=30: w=6, tokens 192..195.
  last_window='remainder': the tokens after the P-1 windows, (P-1)·w .. N_p-1 (P=30: 174..195);
  when there are none, the last full window again.
  """
  n_p = tokens.shape[1]
  fn = {'mean_pooling': np.mean, 'max_pooling': np.max}[kind]
  if num_prompts == 1:
    return fn(tokens, axis=1, keepdims=True)
  w = n_p // (num_prompts - 1)
  if w == 0:
    raise ValueError(f'{num_prompts} prompts need at least {num_prompts - 1} tokens per image')
  bounds = [(j * w, (j + 1) * w) for j in range(num_prompts - 1)]
  if last_window == 'release':
    bounds.append((n_p - n_p % w if n_p % w else 0, n_p))
  elif last_window == 'remainder':
    last = (num_prompts - 1) * w
    bounds.append((last, n_p) if last < n_p else bounds[-1])
  else:
    raise ValueError(f"prompt_init.last_window must be 'release' or 'remainder', got "
                     f'{last_window!r}')
  return np.stack([fn(tokens[:, a:b], axis=1) for a, b in bounds], axis=1)


def prototypes(tokens: np.ndarray, num_prompts: int, strategy: str, seed: int,
               last_window: str = 'release') -> np.ndarray:
  """[N, N_p, D] tokens of one level -> [P, D] prompt prototypes."""
  rng = np.random.default_rng(seed)
  tokens = np.asarray(tokens, np.float32)
  flat = tokens.reshape(-1, tokens.shape[-1])
  if strategy == 'random':
    return flat[rng.choice(len(flat), size=num_prompts, replace=False)]
  if strategy in ('mean_pooling', 'max_pooling'):
    pooled = pool_windows(tokens, num_prompts, strategy, last_window)
    pooled = pooled.reshape(-1, tokens.shape[-1])
    return pooled[rng.choice(len(pooled), size=num_prompts, replace=False)]
  if strategy == 'kmeans':
    return kmeans.euclidean_kmeans(flat, num_prompts, seed=seed)
  raise ValueError(f'unknown SPT strategy {strategy!r}; known: {STRATEGIES}')


def level_prototypes(ctx: base.PrepareContext, level: int, num_prompts: int) -> np.ndarray:
  """[P, D] prototypes of one level (cached in the workdir)."""
  pi = ctx.config.prompt_init
  strategy, fraction, seed = pi.strategy, float(pi.fraction), int(pi.seed)
  window = f'_{pi.last_window}' if strategy in ('mean_pooling', 'max_pooling') else ''
  key = ctx.cache_key(base.FEATURE_KEYS + ('prompt_init.batch_size',))
  name = f'spt_{strategy}{window}_P{num_prompts}_L{level}_s{seed}_f{fraction}_{key[:12]}.npz'
  path = os.path.join(ctx.workdir, name)
  if os.path.exists(path):
    return np.load(path, allow_pickle=False)['prototypes']
  split = ctx.config.data.train_split
  n = ctx.source.splits[split]
  keep = max(1, math.ceil(fraction * n))
  tokens, _ = ctx.features(split, lambda l, o: level_tokens(o, level),
                           batch_size=int(pi.batch_size), max_examples=keep)
  protos = prototypes(tokens, num_prompts, strategy, seed + 1000 * level, pi.last_window)
  os.makedirs(ctx.workdir, exist_ok=True)
  buf = io.BytesIO()
  np.savez(buf, prototypes=protos, seed=seed, level=level, strategy=strategy, fraction=fraction,
           num_images=keep)
  with open(path + '.tmp', 'wb') as f:
    f.write(buf.getvalue())
  os.replace(path + '.tmp', path)
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
    rows = [level_prototypes(ctx, lv, p)
            for lv in progress.bar(levels, desc=f'SPT prototypes {path}', unit='level')]
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


def check_prompt_init(c: base.Config) -> list[str]:
  """`config.prompt_init` when SPT prototypes initialise the prompts."""
  init = c.prompt_init
  out = checks.one_of('prompt_init.strategy', init.strategy, STRATEGIES)
  if not 0 < init.fraction <= 1:
    out.append(f'prompt_init.fraction={init.fraction!r}: must be in (0, 1]')
  out += checks.at_least('prompt_init.batch_size', init.batch_size, 1)
  return out + checks.one_of('prompt_init.last_window', init.last_window,
                                 ('release', 'remainder'))


@base.register_initializer('spt', check=check_prompt_init)
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


def _vpt_shapes(config: base.Config, arch: base.Arch) -> dict[str, tuple[int, ...]]:
  v = config.vpt
  if v.project_dim:
    raise ValueError('SPT needs vpt.project_dim = 0 (prompts live in the token space)')
  return {'prompt/prompts': (arch.depth if v.deep else 1, v.num_prompts, arch.width)}


def prepare(ctx: base.PrepareContext) -> dict[str, np.ndarray]:
  cfg = ctx.config
  return compute(ctx, _vpt_shapes(cfg, ctx.arch), vpt.prompt_slots(cfg, ctx.arch, None))


def init_params(params: Any, prepared: dict[str, np.ndarray], config: base.Config) -> Any:
  del config
  return _write(params, prepared)


def variant(config: base.Config) -> str:
  """'spt_{deep|shallow}_{strategy}', e.g. 'spt_deep_kmeans'."""
  return f"spt_{'deep' if config.vpt.deep else 'shallow'}_{config.prompt_init.strategy}"


def _spt_fwd(t: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  if 'prompt/proj/kernel' in t:
    raise ValueError('SPT\'s release has no prompt projection; a run with vpt.project_dim > 0 '
                     'has no SPT state dict (export it as method vpt)')
  del config
  return {'prompt_token': t.pop('prompt/prompts'), **torch_names.head('head')[0](t)}


def _spt_inv(sd: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  return {'prompt/prompts': sd.pop('prompt_token'), **torch_names.head('head')[1](sd)}


SPT = base.register(base.Method(
    name='spt',
    model=base.ModelParts(
        build_prompter=vpt.build_prompter, init_params=init_params, prompt_slots=vpt.prompt_slots,
        torch_naming=torch_names.TorchNaming(_spt_fwd, _spt_inv, 'WangYZ1608/Self-Prompt-Tuning')),
    recipe=base.Recipe(
        prepare=prepare,
        prepare_keys=base.FEATURE_KEYS + ('vpt.num_prompts', 'vpt.deep', 'vpt.project_dim',
                                          'prompt_init.strategy', 'prompt_init.fraction',
                                          'prompt_init.seed', 'prompt_init.batch_size')),
    evaluation=base.Evaluation(variant=variant),
    config_section='vpt', section=vpt.section,
    check=lambda c: vpt.check(c) + check_prompt_init(c)))
