"""Reads PyTorch-style state dicts into {name: numpy array} without requiring torch.

Supported containers: the zip format written by `torch.save` (PyTorch >= 1.6: `archive/data.pkl`
plus
raw storages, read here with a restricted unpickler), `.npz`, and `.safetensors` (numpy API). The
legacy (pre-1.6, non-zip) torch format and TorchScript archives need torch; the error says so.
A flax msgpack checkpoint (`flax.training.checkpoints.save_checkpoint`'s `checkpoint_<step>` file,
as the original ViT's vit_jax/train.py writes) is read as its nested dict of arrays.
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import zipfile
from typing import Any
from collections.abc import Mapping

import numpy as np

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
    'BFloat16Storage': 'bfloat16',
}
_TORCH_DTYPES = {'float32': np.float32, 'float': np.float32, 'float64': np.float64,
                 'double': np.float64, 'float16': np.float16, 'half': np.float16,
                 'int64': np.int64, 'long': np.int64, 'int32': np.int32, 'int': np.int32,
                 'int16': np.int16, 'int8': np.int8, 'uint8': np.uint8, 'bool': np.bool_,
                 'bfloat16': 'bfloat16'}


class _Dtype:
  def __init__(self, dtype):
    self.dtype = dtype


def _np_dtype(d):
  if isinstance(d, str) and d == 'bfloat16':
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(d)


def _rebuild_tensor(storage, offset, size, stride, *args):
  del args
  data, dtype = storage
  flat = np.frombuffer(data, dtype=_np_dtype(dtype))
  if not size:
    return flat[offset].copy()
  itemsize = flat.itemsize
  return np.lib.stride_tricks.as_strided(
      flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *args):
  del requires_grad, backward_hooks, args
  return data


class _TorchUnpickler(pickle.Unpickler):
  """Allows only the globals a state dict needs; tensors become numpy arrays."""

  def __init__(self, fobj, zf: zipfile.ZipFile, prefix: str):
    super().__init__(fobj)
    self._zf, self._prefix = zf, prefix

  def find_class(self, module, name):
    if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
      return _rebuild_tensor
    if module == 'torch._utils' and name == '_rebuild_parameter':
      return _rebuild_parameter
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _Dtype(_STORAGE_DTYPES[name])
    if module == 'torch' and name in _TORCH_DTYPES:
      return _Dtype(_TORCH_DTYPES[name])
    if module == 'collections' and name == 'OrderedDict':
      return collections.OrderedDict
    if module == 'torch.serialization' and name == '_get_layout':
      return lambda *a: None
    if module == 'torch' and name in ('Size',):
      return tuple
    if module == 'argparse' and name == 'Namespace':
      return lambda *a, **k: dict(*a, **k)
    if module in ('builtins', '__builtin__') and name in ('set', 'frozenset', 'slice', 'dict',
                                                          'list', 'tuple'):
      return getattr(builtins, name)
    raise pickle.UnpicklingError(
        f'{module}.{name} is not allowed in a torch-free state-dict read; '
        'install torch (pip install torch==2.13.0) to read this file')

  def persistent_load(self, pid):
    kind, storage_type, key, _, _ = pid
    assert kind == 'storage', pid
    dtype = storage_type.dtype if isinstance(storage_type, _Dtype) else storage_type
    data = self._zf.read(f'{self._prefix}/data/{key}')
    return (data, dtype)


def _read_torch_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    pkl = [n for n in zf.namelist() if n.endswith('/data.pkl')]
    if not pkl:
      raise ValueError(f'{path}: a zip without data.pkl; not a torch.save file')
    if any(n.endswith('/constants.pkl') or '/code/' in n for n in zf.namelist()):
      raise ValueError(f'{path} is a TorchScript archive; reading it needs torch '
                       '(pip install torch==2.13.0)')
    prefix = pkl[0][:-len('/data.pkl')]
    with zf.open(pkl[0]) as f:
      return _TorchUnpickler(f, zf, prefix).load()


def _torch_load(path: str) -> Any:
  try:
    import torch
  except ImportError as e:
    raise ImportError(f'{path} is a legacy (non-zip) torch file; reading it needs torch: '
                      'pip install torch==2.13.0') from e
  obj = torch.load(path, map_location='cpu', weights_only=False)
  return _to_numpy(obj)


def _to_numpy(obj: Any) -> Any:
  if hasattr(obj, 'detach') and hasattr(obj, 'numpy'):
    t = obj.detach().cpu()
    if str(t.dtype) == 'torch.bfloat16':
      return t.float().numpy()
    return t.numpy()
  if isinstance(obj, Mapping):
    return {k: _to_numpy(v) for k, v in obj.items()}
  return obj


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
    return _read_torch_zip(path)
  if is_flax_msgpack(path):
    return read_flax_msgpack(path)
  return _torch_load(path)
