"""The training and eval loops with the model replaced by identity, in img/s (prints JSON).

  python -m benchmarks.input_loop [--image_size=224] [--n_train=1000] [--batch_size=128]

A VTAB-1k-sized training split (random uint8 pixels, as `TfSource.decoded` keeps them) runs
through the trainer's pieces: host-side index batches (`inputs.index_batches`), `put_batch`,
`steps.make_cached_train_step` (gather + normalise [+ augment] in the jitted step, an SGD update,
the finite check), metrics read at log steps only. The model is identity (`IdentityModel`): the
step materialises the model-ready images and nothing else costs. Rows: device cache uint8 / float32,
with and without augmentation; the host path (float32 normalised on the host, the previous
default) for comparison; the eval loop over a split decoded once (`inputs.eval_batches`).
"""

from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common as bench


class IdentityModel(nn.Module):
  """The model replaced by (almost) identity: its cheapest possible first layer, a 16x16 stride-16
  convolution to one channel, frozen as a backbone is (0.3 MFLOP per 224px image; a real ViT's
  patch embedding reads its input the same way, whole), then a trainable 1 x C head, so the step
  has a loss and a gradient and every pixel is read; nothing else costs."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(1, (16, 16), strides=16, padding='VALID', name='embed')(x)
    head = self.param('head', nn.initializers.zeros, (1, self.num_classes))
    return x.mean((1, 2)) @ head, {}


class _Cached:
  """A source over already-decoded arrays (what `TfSource.decoded` returns after the first call)."""

  def __init__(self, arrays, sampler='shuffle'):
    self.arrays, self.sampler, self.images_per_class = arrays, sampler, 2
    self.splits = {k: len(v[1]) for k, v in arrays.items()}

  def decoded(self, split, dtype=np.float32, path=None):
    x, y = self.arrays[split]
    return (x if x.dtype == dtype else (x.astype(np.float32) / 255.0)), y

  def train_indices(self, labels, batch_size, shuffle_seed, drop_remainder):
    from prompt_jax.data import pipeline
    return pipeline.TfSource.train_indices(self, labels, batch_size, shuffle_seed,
                                           drop_remainder)


def _cfg(dtype: str, augment: bool, batch_size: int):
  from prompt_jax.configs import common
  c = common.base()
  c.data.update(cache_dtype=dtype, augment=augment, train_split='train', normalization='imagenet')
  c.train.update(batch_size=batch_size, drop_last=False)
  return c


def train_loop(src, cfg, epochs: int, host_path: bool = False) -> float:
  """img/s of `epochs` passes (after one warm-up pass) through the training loop."""
  from prompt_jax.train import inputs
  from prompt_jax.train import sharding as shard_lib
  from prompt_jax.train import steps
  from prompt_jax.data import preprocess
  from prompt_jax.methods import base
  mesh = shard_lib.make_mesh(cfg.mesh)
  bsh = shard_lib.batch_sharding(mesh)
  model = IdentityModel()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))['params']
  params, frozen = {'head': params['head']}, {'embed': params['embed']}  # the conv is frozen
  tx = optax.sgd(0.1)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': params, 'opt_state': tx.init(params),
           'method_state': {}, 'rng': jax.random.PRNGKey(1)}
  labels = src.arrays['train'][1]
  if host_path:
    images01 = src.decoded('train', np.float32)[0]
    step = jax.jit(steps.make_train_step(model, base.get('linear').recipe, cfg, tx),
                   donate_argnums=0)
  else:
    cache = inputs.put_train_split(src, cfg, mesh)
    cached = jax.jit(steps.make_cached_train_step(model, base.get('linear').recipe, cfg, tx),
                     donate_argnums=0)

  def one_epoch(state, epoch):
    n = 0
    for i, b in enumerate(inputs.index_batches(src, cfg, labels, epoch)):
      if host_path:
        x = preprocess.normalize(images01[b['index']], cfg.data.normalization)
        batch = {'image': x.astype(np.float32), 'label': labels[b['index']], 'mask': b['mask']}
        state, m = step(state, frozen, shard_lib.put_batch(batch, bsh))
      else:
        state, m = cached(state, frozen, cache, shard_lib.put_batch(b, bsh))
      n += int(b['mask'].sum())
      if (i + 1) % cfg.train.log_every_steps == 0:
        jax.device_get(m['loss'])  # the trainer reads metrics at log steps only
    jax.block_until_ready(state)
    return state, n

  state, _ = one_epoch(state, 0)
  t, total = time.perf_counter(), 0
  for e in range(1, epochs + 1):
    state, n = one_epoch(state, e)
    total += n
  return total / (time.perf_counter() - t)


def eval_loop(src, cfg, batch_size: int, passes: int) -> float:
  from prompt_jax.train import inputs
  from prompt_jax.train import sharding as shard_lib
  from prompt_jax.train import steps
  bsh = shard_lib.batch_sharding(shard_lib.make_mesh(cfg.mesh))
  model = IdentityModel()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))['params']
  fn = jax.jit(steps.make_eval_step(model, cfg.data.normalization))

  def one_pass():
    total = None
    for b in inputs.eval_batches(src, cfg, 'test', batch_size, '/tmp'):
      m = fn(params, {}, shard_lib.put_batch(b, bsh))
      total = m if total is None else total.merge(m)
    return float(total.compute()['accuracy'])

  one_pass()
  t = time.perf_counter()
  for _ in range(passes):
    one_pass()
  return passes * src.splits['test'] / (time.perf_counter() - t)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--n_train', type=int, default=1000)
  p.add_argument('--n_test', type=int, default=2000)
  p.add_argument('--batch_size', type=int, default=128)
  p.add_argument('--eval_batch_size', type=int, default=256)
  p.add_argument('--epochs', type=int, default=3)
  a = p.parse_args()
  rng = np.random.default_rng(0)
  s = a.image_size
  arrays = {'train': (rng.integers(0, 256, (a.n_train, s, s, 3), dtype=np.uint8),
                      rng.integers(0, 10, a.n_train).astype(np.int32)),
            'test': (rng.integers(0, 256, (a.n_test, s, s, 3), dtype=np.uint8),
                     rng.integers(0, 10, a.n_test).astype(np.int32))}
  rows = {}
  for dtype in ('uint8', 'float32'):
    arr = {k: (v[0] if dtype == 'uint8' else v[0].astype(np.float32) / 255.0, v[1])
           for k, v in arrays.items()}
    src = _Cached(arr)
    for augment in (False, True):
      cfg = _cfg(dtype, augment, a.batch_size)
      rows[f'train_identity_device_{dtype}{"_augment" if augment else ""}_img_per_s'] = round(
          train_loop(src, cfg, a.epochs), 1)
    rows[f'eval_identity_{dtype}_img_per_s'] = round(
        eval_loop(src, _cfg(dtype, False, a.batch_size), a.eval_batch_size, a.epochs), 1)
  src = _Cached({k: (v[0].astype(np.float32) / 255.0, v[1]) for k, v in arrays.items()})
  rows['train_identity_host_path_float32_img_per_s'] = round(
      train_loop(src, _cfg('float32', False, a.batch_size), a.epochs, host_path=True), 1)
  print(json.dumps({'benchmark': 'input_loop', 'image_size': s, 'n_train': a.n_train,
                    'n_test': a.n_test, 'batch_size': a.batch_size,
                    'eval_batch_size': a.eval_batch_size, 'rows': rows,
                    'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
