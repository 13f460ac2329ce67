"""Reads PyTorch-style state dicts into {name: numpy array} without requiring torch.

Supported containers: the zip format written by `torch.save` (PyTorch >= 1.6: `archive/data.pkl`
plus raw storages), the legacy (pre-1.6, non-zip) torch format and TorchScript archives (their
state dict), all read through `safe_pickle`'s allow-list; `.npz` (`allow_pickle=False`) and
`.safetensors` (numpy API).
A flax msgpack checkpoint (`flax.training.checkpoints.save_checkpoint`'s `checkpoint_<step>` file,
as the original ViT's vit_jax/train.py writes) is read as its nested dict of arrays.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any
from collections.abc import Mapping

import numpy as np

from prompt_jax.checkpoints import safe_pickle


def _localize(path: str) -> str:
  """Remote paths (gs://, s3://, ...) are copied to a local temporary file once."""
  if '://' not in path:
    return path
  import tempfile
  from etils import epath
  remote = epath.Path(path)
  if not remote.exists():
    raise FileNotFoundError(f'checkpoint file not found: {path}')
  local = os.path.join(tempfile.mkdtemp(prefix='prompt_jax_ckpt_'), remote.name)
  remote.copy(local)
  return local


def is_flax_msgpack(path: str) -> bool:
  """A msgpack map at the top (flax.serialization.to_bytes of a dict / tuple state). A pickle (a
  legacy torch file) starts with 0x80, an empty map, which no checkpoint is."""
  with open(path, 'rb') as f:
    first = f.read(1)
  return bool(first) and (0x81 <= first[0] <= 0x8f or first[0] in (0xde, 0xdf))


def read_flax_msgpack(path: str) -> Any:
  from flax import serialization
  with open(path, 'rb') as f:
    return _to_numpy_tree(serialization.msgpack_restore(f.read()))


def _to_numpy_tree(obj: Any) -> Any:
  if isinstance(obj, Mapping):
    return {k: _to_numpy_tree(v) for k, v in obj.items()}
  return np.asarray(obj) if hasattr(obj, 'shape') else obj


def read(path: str) -> Any:
  """Loads a checkpoint file's object (dicts of numpy arrays; nested containers are kept).
  `path` may be local or remote (anything etils.epath opens, e.g. gs://)."""
  path = _localize(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint file not found: {path}')
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file
    return load_file(path)
  if zipfile.is_zipfile(path):
    return safe_pickle.read_torch_zip(path)
  if is_flax_msgpack(path):
    return read_flax_msgpack(path)
  return safe_pickle.read_legacy_torch(path)
