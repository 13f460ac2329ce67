"""Name -> data-source factory. A factory takes the `config.data` ConfigDict and returns a Source."""

from __future__ import annotations

from typing import Callable

import ml_collections

from prompt_jax.data.source import Source

_FACTORIES: dict[str, Callable[[ml_collections.ConfigDict], Source]] = {}


def register(name: str):
  def wrap(fn):
    if name in _FACTORIES:
      raise ValueError(f'data source {name!r} registered twice')
    _FACTORIES[name] = fn
    return fn
  return wrap


def get_source(data_config: ml_collections.ConfigDict) -> Source:
  """Builds the source named by `data_config.source` (e.g. 'digits', 'vtab', 'folder')."""
  # Importing the modules registers their factories.
  from prompt_jax.data import digits  # pylint: disable=g-import-not-at-top,unused-import
  try:
    from prompt_jax.data import vtab, folder  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:  # pragma: no cover - only while those modules are absent
    if data_config.source in ('vtab', 'folder'):
      raise
    del e
  name = data_config.source
  if name not in _FACTORIES:
    raise KeyError(f'unknown data source {name!r}; known: {sorted(_FACTORIES)}')
  return _FACTORIES[name](data_config)
