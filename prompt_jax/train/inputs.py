"""The trainer's input path: the device cache (default where the source can) or host batches.

  path = inputs.make(cfg, source, mesh, workdir)    # DeviceCache or HostStream, chosen once
  step = path.jit_train_step(steps.make_train_step(...), state_sh, frozen_sh, bsh, rep)
  for batch in path.train_batches(epoch, skip, steps_per_epoch): ...
  for batch in path.eval_batches(split, batch_size): ...   # feed path.eval_step(model)

With `data.device_cache` and a source that keeps decoded splits (`TfSource.decoded`: vtab,
folder), the training split (VTAB-1k: 1,000 images) is decoded once, placed on the devices
sharded over the data axes, and each step receives only its indices; normalisation and
augmentation run in the jitted step (steps.gather_from_cache). The batch order is the host
path's (seed, epoch) permutation or class-balanced order, so resumes stay exact. Each eval split is
decoded once per run and kept: in memory, or, when its pixels exceed `data.cache_memory_gb`, in a
.npy memmap under workdir/cache. Pixels are kept as `data.cache_dtype`: float32 in [0, 1] (the
host path's values exactly) or uint8 = round(255 x) (4x less memory; differs by <= 0.5/255).
Multi-host: every process computes the same global index batch and feeds its contiguous rows;
each device holds only its shard of the cached split.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from absl import logging
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from prompt_jax.train import sharding as shard_lib
from prompt_jax.train import steps as steps_lib
from prompt_jax.data import split_cache
from prompt_jax.data.source import Batch, batch_indices, host_rows

Config = ml_collections.ConfigDict


def device_cached(cfg: Config, source: Any) -> bool:
  """The device path applies: data.device_cache and a source with `decoded` splits."""
  return bool(cfg.data.device_cache) and hasattr(source, 'decoded')


def put_rows(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host array [N, ...] (the same on every process) -> a global array sharded over the data
  axes along N, padded with zero rows to a multiple of the data-parallel device count."""
  n_shards = mesh.shape['data'] * mesh.shape['fsdp']
  pad = -len(array) % n_shards
  if pad:
    array = np.concatenate([array, np.zeros((pad,) + array.shape[1:], array.dtype)])
  sh = NamedSharding(mesh, P(shard_lib.DATA_AXES))
  return jax.make_array_from_callback(array.shape, sh, lambda idx: np.asarray(array[idx]))


def put_train_split(source: Any, cfg: Config, mesh: Mesh) -> dict[str, jax.Array]:
  """{'image': [N', S, S, 3] cache_dtype, 'label': int32[N']} on the devices (N' >= N)."""
  images, labels = source.decoded(cfg.data.train_split, np.dtype(cfg.data.cache_dtype))
  return {'image': put_rows(np.asarray(images), mesh), 'label': put_rows(labels, mesh)}


def train_labels(source: Any, cfg: Config) -> np.ndarray:
  return source.decoded(cfg.data.train_split, np.dtype(cfg.data.cache_dtype))[1]


def shuffle_seed(cfg: Config, epoch: int) -> int:
  """The order of epoch `epoch` depends on (seed, epoch) only (both paths)."""
  return cfg.seed * 1_000_003 + epoch


def index_batches(source: Any, cfg: Config, labels: np.ndarray, epoch: int) -> Iterator[Batch]:
  """One training pass: this host's rows of {'index': int32[B], 'mask': bool[B]}."""
  t = cfg.train
  for idx, mask in source.train_indices(labels, t.batch_size, shuffle_seed(cfg, epoch),
                                        t.drop_last):
    yield host_rows({'index': idx.astype(np.int32), 'mask': mask}, jax.process_index(),
                    jax.process_count())


def _cache_path(source: Any, cfg: Config, split: str, workdir: str) -> str | None:
  """Where a large eval split's memmap lives (None: in memory)."""
  s = cfg.data.image_size
  nbytes = source.splits[split] * s * s * 3 * np.dtype(cfg.data.cache_dtype).itemsize
  if nbytes <= cfg.data.cache_memory_gb * 2**30:
    return None
  root = workdir if '://' not in workdir else tempfile.gettempdir()  # memmaps need a local disk
  fields = {'split': split, 'dtype': cfg.data.cache_dtype,
            **{k: v for k, v in cfg.data.items() if k not in ('eval_splits', 'train_split')},
            'opts': dataclasses.asdict(source.opts) if hasattr(source, 'opts') else None,
            # changed files under data_dir give another name, so the split is decoded again
            'source': source.identity(split) if hasattr(source, 'identity') else None}
  name = f'{split}-{split_cache.key(fields)}-p{jax.process_index()}.npy'
  return os.path.join(root, 'cache', name)


def eval_batches(source: Any, cfg: Config, split: str, batch_size: int, workdir: str
                 ) -> Iterator[Batch]:
  """One pass over an eval split decoded once per run: this host's rows of
  {'image': raw pixels [B, S, S, 3], 'label', 'mask'} in split order, the last batch padded."""
  images, labels = source.decoded(split, np.dtype(cfg.data.cache_dtype),
                                  _cache_path(source, cfg, split, workdir))
  for idx, mask in batch_indices(len(labels), batch_size, shuffle_seed=None,
                                 drop_remainder=False):
    lo, hi = int(idx[0]), int(idx[0]) + int(mask.sum())  # split order: one contiguous slice
    x = np.asarray(images[lo:hi])
    y = labels[lo:hi]
    if hi - lo < batch_size:
      pad = batch_size - (hi - lo)
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
    yield host_rows({'image': x, 'label': y.astype(np.int32), 'mask': mask},
                    jax.process_index(), jax.process_count())


# ---------------------------------------------------------------- the input path of a run

StepFn = Callable[..., Any]


class InputPath(Protocol):
  """How a run's batches reach its jitted steps; `make` chooses one per run."""

  name: str

  def train_batches(self, epoch: int, skip: int, steps_per_epoch: int) -> Iterator[Batch]:
    """This host's batches of epoch `epoch`, from batch `skip` to `steps_per_epoch`."""

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    """One pass over `split` in split order, the last batch padded."""

  def jit_train_step(self, step: StepFn, state_sh: Any, frozen_sh: Any, bsh: Any,
                     rep: Any) -> StepFn:
    """`step` (steps.make_train_step) jitted to take this path's batches: (state, frozen, batch)."""

  def eval_step(self, model: Any) -> StepFn:
    """The jitted eval step for this path's eval batches: (trainable, frozen, batch)."""


def _window(batches: Iterator[Batch], skip: int, steps_per_epoch: int) -> Iterator[Batch]:
  for i, batch in enumerate(batches):
    if i >= steps_per_epoch:
      return
    if i >= skip:
      yield batch


class DeviceCache:
  """The training split on the devices (decoded once); each step receives only its indices."""

  name = 'device_cache'

  def __init__(self, source: Any, cfg: Config, mesh: Mesh, workdir: str):
    self.source, self.cfg, self.workdir = source, cfg, workdir
    self.cache = put_train_split(source, cfg, mesh)
    self.labels = train_labels(source, cfg)

  def train_batches(self, epoch: int, skip: int, steps_per_epoch: int) -> Iterator[Batch]:
    return _window(index_batches(self.source, self.cfg, self.labels, epoch), skip,
                   steps_per_epoch)

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    return eval_batches(self.source, self.cfg, split, batch_size, self.workdir)

  def jit_train_step(self, step: StepFn, state_sh: Any, frozen_sh: Any, bsh: Any,
                     rep: Any) -> StepFn:
    cached = jax.jit(steps_lib.gather_from_cache(step, self.cfg),
                     in_shardings=(state_sh, frozen_sh, bsh, bsh),
                     out_shardings=(state_sh, rep), donate_argnums=(0,))
    return lambda state, frozen, batch: cached(state, frozen, self.cache, batch)

  def eval_step(self, model: Any) -> StepFn:
    return jax.jit(steps_lib.make_eval_step(model, self.cfg.data.normalization))


class HostStream:
  """Normalised float32 batches decoded on the host for every step (`source.iterate`)."""

  name = 'host_stream'

  def __init__(self, source: Any, cfg: Config):
    self.source, self.cfg = source, cfg

  def train_batches(self, epoch: int, skip: int, steps_per_epoch: int) -> Iterator[Batch]:
    c = self.cfg
    it = self.source.iterate(c.data.train_split, c.train.batch_size,
                             shuffle_seed=shuffle_seed(c, epoch), drop_remainder=c.train.drop_last,
                             process_index=jax.process_index(), process_count=jax.process_count())
    return _window(it, skip, steps_per_epoch)

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    return self.source.iterate(split, batch_size, process_index=jax.process_index(),
                               process_count=jax.process_count())

  def jit_train_step(self, step: StepFn, state_sh: Any, frozen_sh: Any, bsh: Any,
                     rep: Any) -> StepFn:
    return jax.jit(step, in_shardings=(state_sh, frozen_sh, bsh),
                   out_shardings=(state_sh, rep), donate_argnums=(0,))

  def eval_step(self, model: Any) -> StepFn:
    return jax.jit(steps_lib.make_eval_step(model))


def make(cfg: Config, source: Any, mesh: Mesh, workdir: str) -> InputPath:
  """The run's input path: `DeviceCache` where `device_cached`, else `HostStream`."""
  if device_cached(cfg, source):
    return DeviceCache(source, cfg, mesh, workdir)
  if cfg.data.device_cache:
    logging.info('data.source=%r keeps no decoded splits: host input path (normalised float32 '
                 'batches per step)', cfg.data.source)
  return HostStream(source, cfg)
