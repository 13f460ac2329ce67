"""Loading backbone weights with validation; formats are registered by name (`config.init.format`).

A format loader is fn(path, expected {flat key: shape}, config) -> {flat key: float32 array}, and
must raise `CheckpointError` naming missing / unexpected / mis-shaped keys.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from prompt_jax.checkpoints import vit as vit_ckpt
from prompt_jax.checkpoints.errors import CheckpointError
from prompt_jax.checkpoints.errors import validate

Loader = Callable[[str, Mapping[str, tuple[int, ...]], Any], dict[str, np.ndarray]]
_LOADERS: dict[str, Loader] = {}


def register_format(name: str):
  def wrap(fn: Loader) -> Loader:
    _LOADERS[name] = fn
    return fn
  return wrap


def _vit_loader(fmt: str) -> Loader:
  def load(path, expected, config):
    heads = expected['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'][1]
    return vit_ckpt.load(path, fmt, expected, num_heads=heads,
                         posemb_resize=config.init.posemb_resize)
  return load


for _fmt in vit_ckpt.FORMATS:
  register_format(_fmt)(_vit_loader(_fmt))


def load_backbone(config: Any, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """Loads `config.init.checkpoint` in `config.init.format`, validated against `expected`."""
  fmt = config.init.format
  if fmt not in _LOADERS:
    try:  # formats defined next to other models register on import
      import prompt_jax.checkpoints.clip  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      pass
  if fmt not in _LOADERS:
    raise CheckpointError(f'unknown checkpoint format {fmt!r}; known: {sorted(_LOADERS)}')
  return _LOADERS[fmt](config.init.checkpoint, expected, config)


__all__ = ['CheckpointError', 'validate', 'load_backbone', 'register_format']
