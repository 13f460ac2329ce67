"""Trees of arrays and JSON values <-> one .npz file, without pickle (safe to load from anyone).

  treeio.save('prepared.npz', {'anchors': (0, 4), 'bank': bank, 'classnames': ['a', 'b']})
  value = treeio.load('prepared.npz')        # the same tree back: tuples stay tuples

A tree is dicts (str keys), lists, tuples, None, bool, int, float, str and numpy / jax arrays or
numpy scalars (a non-finite python float comes back as a numpy float64). Arrays are npz entries
'a0', 'a1', ...; the structure is JSON in the entry '__tree__', where an array is
{"__array__": "a0"}, a numpy scalar {"__scalar__": "a0"} and a tuple {"__tuple__": [...]}.
`np.load(allow_pickle=False)` reads it: object arrays are refused on save. The write is atomic
(a temporary file renamed into place). Paths may be local or gs://.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from etils import epath
import numpy as np

_TAGS = ('__array__', '__scalar__', '__tuple__')


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      if not isinstance(k, str) or k in _TAGS:
        raise TypeError(f'treeio: key {k!r} at {where or "/"} must be a str other than {_TAGS}')
      out[k] = _encode(v, arrays, f'{where}/{k}')
    return out
  if isinstance(value, (list, tuple)):
    items = [_encode(v, arrays, f'{where}/{i}') for i, v in enumerate(value)]
    return {'__tuple__': items} if isinstance(value, tuple) else items
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, int) or (type(value) is float and math.isfinite(value)):
    return value
  is_scalar = isinstance(value, (float, np.generic))
  a = np.asarray(value)
  if a.dtype.hasobject:
    raise TypeError(f'treeio: {where or "/"} is an object array / {type(value).__name__}; only '
                    'numeric, bool and str arrays are stored')
  name = f'a{len(arrays)}'
  arrays[name] = a
  return {'__scalar__' if is_scalar else '__array__': name}


def _decode(node: Any, arrays: Any) -> Any:
  if isinstance(node, list):
    return [_decode(v, arrays) for v in node]
  if isinstance(node, dict):
    if set(node) == {'__tuple__'}:
      return tuple(_decode(v, arrays) for v in node['__tuple__'])
    if set(node) == {'__array__'}:
      return arrays[node['__array__']]
    if set(node) == {'__scalar__'}:
      return arrays[node['__scalar__']][()]
    return {k: _decode(v, arrays) for k, v in node.items()}
  return node


def dumps(value: Any) -> bytes:
  """The .npz bytes of `value`."""
  arrays: dict[str, np.ndarray] = {}
  structure = json.dumps(_encode(value, arrays, ''), allow_nan=False)
  buf = io.BytesIO()
  np.savez(buf, __tree__=np.asarray(structure), **arrays)
  return buf.getvalue()


def loads(data: bytes) -> Any:
  """The tree stored in .npz bytes written by `dumps`."""
  with np.load(io.BytesIO(data), allow_pickle=False) as z:
    if '__tree__' not in z.files:
      raise ValueError('not a treeio file: no __tree__ entry')
    arrays = {k: z[k] for k in z.files if k != '__tree__'}
    structure = json.loads(str(z['__tree__']))
  return _decode(structure, arrays)


def save(path: str, value: Any) -> None:
  """Writes `value` to `path` atomically."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_bytes(dumps(value))
  tmp.replace(path)


def load(path: str) -> Any:
  """Reads a tree written by `save`."""
  return loads(epath.Path(path).read_bytes())
