"""Device mesh and shardings: batch over all devices, trainable state replicated, frozen backbone
replicated or (mesh.fsdp > 1) split over the 'fsdp' axis along each tensor's largest divisible
dim."""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXES = ('data', 'fsdp')


def maybe_initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
  """Multi-host: `jax.distributed.initialize()` when `mesh.distributed` is set, before anything
  touches the devices. Cloud TPU, SLURM and Open MPI are detected by JAX; elsewhere set
  JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
  if not cfg.distributed or jax.distributed.is_initialized():
    return
  kw = {}
  for key, env in (('num_processes', 'JAX_NUM_PROCESSES'), ('process_id', 'JAX_PROCESS_ID')):
    if os.environ.get(env):
      kw[key] = int(os.environ[env])
  jax.distributed.initialize(**kw)


def make_mesh(cfg: ml_collections.ConfigDict) -> Mesh:
  """A ('data', 'fsdp') mesh over every device of every host."""
  devices = np.asarray(jax.devices())
  if len(devices) % cfg.fsdp:
    raise ValueError(f'mesh.fsdp={cfg.fsdp} does not divide the {len(devices)} devices')
  return Mesh(devices.reshape(len(devices) // cfg.fsdp, cfg.fsdp), DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def frozen_shardings(mesh: Mesh, tree: Any) -> Any:
  """Per-leaf shardings for the frozen params."""
  n = mesh.shape['fsdp']

  def spec(x):
    if n == 1 or x.ndim == 0:
      return replicated(mesh)
    dims = sorted(range(x.ndim), key=lambda d: -x.shape[d])
    for d in dims:
      if x.shape[d] % n == 0:
        axes = [None] * x.ndim
        axes[d] = 'fsdp'
        return NamedSharding(mesh, P(*axes))
    return replicated(mesh)

  return jax.tree_util.tree_map(spec, tree)


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This host's rows of a global batch -> global arrays sharded over the data axes."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
