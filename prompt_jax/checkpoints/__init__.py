"""Loading backbone weights with validation; formats are registered by name (`config.init.format`).

A format loader is fn(path, expected {flat key: shape}, config) -> {flat key: float32 array}, and
must raise `CheckpointError` naming missing / unexpected / mis-shaped keys. Loaders register
themselves in their module (`@FORMATS.register('npz')` in checkpoints/vit.py, the CLIP formats in
checkpoints/clip.py).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping

import numpy as np

from prompt_jax.util import registry
from prompt_jax.checkpoints.errors import CheckpointError
from prompt_jax.checkpoints.errors import validate

Loader = Callable[[str, Mapping[str, tuple[int, ...]], Any], dict[str, np.ndarray]]
FORMATS: registry.Registry[Loader] = registry.Registry('checkpoint format',
                                                       'prompt_jax.checkpoints')
register_format = FORMATS.register


def load_backbone(config: Any, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """Loads `config.init.checkpoint` in `config.init.format`, validated against `expected`."""
  try:
    loader = FORMATS.get(config.init.format)
  except KeyError as e:
    raise CheckpointError(str(e.args[0])) from None
  return loader(config.init.checkpoint, expected, config)


__all__ = ['CheckpointError', 'FORMATS', 'validate', 'load_backbone', 'register_format']
