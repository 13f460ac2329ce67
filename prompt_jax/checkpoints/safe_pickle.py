"""The one unpickler the project uses: an explicit allow-list of globals, tensors as numpy arrays.

Every pickle a checkpoint holds goes through `Unpickler`: the `torch.save` zip format
(`archive/data.pkl`), the legacy (pre-1.6, non-zip) torch format, and a TorchScript archive's
`data.pkl` (OpenAI's CLIP release). Allowed globals: torch's tensor / parameter rebuild functions,
storage and dtype names, `collections.OrderedDict`, plain containers, `argparse.Namespace` (MAE's
saved args) and numpy scalars / dtypes; TorchScript module classes (`__torch__.*`) become plain
attribute records. Anything else is refused with one line naming the file and the global, so no
file we read runs code.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
import re
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

from prompt_jax.checkpoints import errors

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
_BUILTINS = ('set', 'frozenset', 'slice', 'dict', 'list', 'tuple', 'complex', 'bytearray')
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class UnsafePickleError(errors.CheckpointError):
  """A pickle that names a global outside the allow-list; it is never loaded."""


class _Dtype:
  def __init__(self, dtype: Any):
    self.dtype = dtype


class Record:
  """An object the pickle builds from an allowed class name (argparse.Namespace, a TorchScript
  module): `cls` its 'module.name', `state` its attributes."""

  def __init__(self, cls: str):
    self.cls, self.state = cls, {}

  def __setstate__(self, state: Any) -> None:
    self.state = dict(state) if isinstance(state, dict) else {'state': state}


def _record_class(qualname: str) -> type:
  return type('Record', (Record,), {'__new__': lambda c, *a: _new_record(qualname),
                                    '__init__': lambda self, *a, **k: None})


def _new_record(qualname: str) -> Record:
  r = object.__new__(Record)
  Record.__init__(r, qualname)
  return r


def _np_dtype(d: Any) -> np.dtype:
  if isinstance(d, str) and d == 'bfloat16':
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(d)


class _Lazy:
  """A storage whose bytes are filled in after the pickle (the legacy format stores them last)."""

  def __init__(self, dtype: Any):
    self.dtype, self.data = dtype, None


def _rebuild_tensor(storage, offset, size, stride, *args) -> np.ndarray | None:
  del args
  data, dtype = (storage.data, storage.dtype) if isinstance(storage, _Lazy) else storage
  if data is None:  # the legacy format's first pass: storages not read yet
    return None
  flat = np.frombuffer(data, dtype=_np_dtype(dtype))
  if not size:
    return flat[offset].copy()
  itemsize = flat.itemsize
  need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if min(size) > 0 and need > flat.size:
    raise ValueError(f'a tensor of shape {tuple(size)} reads past its storage of {flat.size} '
                     'elements (a truncated or damaged file)')
  return np.lib.stride_tricks.as_strided(
      flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *args):
  del requires_grad, backward_hooks, args
  return data


def _np_scalar(dtype: np.dtype, data: bytes = b'') -> Any:
  return np.frombuffer(data, dtype=dtype)[0] if data else dtype.type()


def _allowed(module: str, name: str) -> Any:
  """The object an allowed global stands for, or None."""
  if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
    return _rebuild_tensor
  if module == 'torch._utils' and name == '_rebuild_parameter':
    return _rebuild_parameter
  if module == 'torch' and name in _STORAGE_DTYPES:
    return _Dtype(_STORAGE_DTYPES[name])
  if module == 'torch' and name in _TORCH_DTYPES:
    return _Dtype(_TORCH_DTYPES[name])
  if module == 'torch' and name == 'Size':
    return tuple
  if module == 'torch.serialization' and name == '_get_layout':
    return lambda *a: None
  if module == 'collections' and name == 'OrderedDict':
    return collections.OrderedDict
  if module in ('builtins', '__builtin__') and name in _BUILTINS:
    return getattr(builtins, name)
  if module == 'torch.jit._pickle' and name.startswith('build_') and name.endswith('list'):
    return list
  if module == 'torch.jit._pickle' and name == 'restore_type_tag':
    return lambda value, type_str: value
  if module in ('numpy.core.multiarray', 'numpy._core.multiarray') and name == 'scalar':
    return _np_scalar
  if module == 'numpy' and name == 'dtype':
    return np.dtype
  if (module, name) == ('argparse', 'Namespace') or module.startswith('__torch__'):
    return _record_class(f'{module}.{name}')
  return None


class Unpickler(pickle.Unpickler):
  """Restricted unpickler for `path`'s pickle `fobj`; `storage(key, dtype)` gives a storage's
  bytes for a persistent id (None: the pickle holds no tensors)."""

  def __init__(self, fobj: BinaryIO, path: str, storage: Any = None):
    super().__init__(fobj)
    self._path, self._storage = path, storage

  def find_class(self, module: str, name: str) -> Any:
    got = _allowed(module, name)
    if got is None:
      raise UnsafePickleError(
          f'{self._path}: refused to unpickle the global {module}.{name} (not a tensor, storage '
          'or plain container; loading it could run code): use a file from a source you trust, '
          'saved as a plain state dict (or .safetensors / .npz)')
    return got

  def persistent_load(self, pid: Any) -> Any:
    if self._storage is None or not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != 'storage':
      raise pickle.UnpicklingError(f'{self._path}: unexpected persistent id {str(pid)[:60]}')
    _, storage_type, key = pid[:3]
    dtype = storage_type.dtype if isinstance(storage_type, _Dtype) else storage_type
    return self._storage(str(key), dtype)


def loads(data: bytes, path: str) -> Any:
  """A plain pickle (no tensors) through the allow-list."""
  return Unpickler(io.BytesIO(data), path).load()


def read_torch_zip(path: str) -> Any:
  """A `torch.save` zip file's object, or a TorchScript archive's state dict (parameters and
  buffers, '.'-joined as `module.state_dict()` names them)."""
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if not pkl:
      raise ValueError(f'{path}: a zip without data.pkl; not a torch.save file')
    prefix = pkl[0][:-len('/data.pkl')]

    def storage(key: str, dtype: Any) -> tuple[bytes, Any]:
      return zf.read(f'{prefix}/data/{key}'), dtype
    with zf.open(pkl[0]) as f:
      obj = Unpickler(f, path, storage).load()
    if isinstance(obj, Record) and obj.cls.startswith('__torch__'):
      code = {n: zf.read(n).decode('utf-8', 'replace') for n in names
              if n.startswith(f'{prefix}/code/') and n.endswith('.py')}
      return script_state_dict(obj, _declared(code, f'{prefix}/code/'), path)
    return obj


_CLASS = re.compile(r'^class (\w+)\(Module\):\n((?:  .*\n|\n)*)', re.M)
_LIST = r'^  {}\s*=\s*\[([^\]]*)\]'


def _declared(code: dict[str, str], root: str) -> dict[str, tuple[list[str], list[str]]]:
  """{'__torch__.mod.Class': (parameter names, buffer names)} from a TorchScript archive's class
  declarations (read as text, never run)."""
  out = {}
  for file, text in code.items():
    module = file[len(root):-len('.py')].replace('/', '.')
    for m in _CLASS.finditer(text):
      lists = []
      for what in ('__parameters__', '__buffers__'):
        found = re.search(_LIST.format(what), m.group(2), re.M)
        lists.append(re.findall(r'"([^"]+)"', found.group(1)) if found else [])
      out[f'{module}.{m.group(1)}'] = (lists[0], lists[1])
  return out


def script_state_dict(obj: Record, declared: dict[str, tuple[list[str], list[str]]], path: str,
                      prefix: str = '') -> dict[str, np.ndarray]:
  """A TorchScript module record -> its state dict (the declared parameters and buffers)."""
  if obj.cls not in declared:
    raise ValueError(f'{path}: TorchScript class {obj.cls} has no declaration in the archive')
  params, buffers = declared[obj.cls]
  out = {}
  for name, value in obj.state.items():
    if isinstance(value, Record) and value.cls.startswith('__torch__'):
      out.update(script_state_dict(value, declared, path, f'{prefix}{name}.'))
    elif name in params or name in buffers:
      if value is not None:
        out[prefix + name] = value
  return out


def read_legacy_torch(path: str) -> Any:
  """A legacy (pre-1.6, non-zip) `torch.save` file: magic, protocol and system-info pickles, the
  object's pickle, the storage keys' pickle, then each storage as int64 element count + bytes."""
  with open(path, 'rb') as f:
    magic = Unpickler(f, path).load()
    if magic != _LEGACY_MAGIC:
      raise ValueError(f'{path}: not a torch.save file (no legacy magic number, no zip)')
    Unpickler(f, path).load()  # protocol version
    Unpickler(f, path).load()  # system info
    start = f.tell()
    storages: dict[str, _Lazy] = {}

    def lazy(key: str, dtype: Any) -> _Lazy:
      return storages.setdefault(key, _Lazy(dtype))
    Unpickler(f, path, lazy).load()  # first pass: which storages, in which dtypes
    keys = Unpickler(f, path).load()
    for key in keys:
      s = storages[str(key)]
      head = f.read(8)
      if len(head) < 8:
        raise EOFError(f'{path}: truncated before the bytes of storage {key}')
      nbytes = struct.unpack('<q', head)[0] * _np_dtype(s.dtype).itemsize
      s.data = f.read(nbytes)
      if len(s.data) < nbytes:
        raise EOFError(f'{path}: truncated inside storage {key}')
    f.seek(start)
    return Unpickler(f, path, lambda key, dtype: storages[key]).load()
