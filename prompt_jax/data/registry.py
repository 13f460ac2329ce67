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
  """Builds the source named by `data_config.source` (e.g. 'digits', 'vtab', 'folder', 'fewshot')."""
  # Importing the modules registers their factories.
  # pylint: disable=g-import-not-at-top,unused-import
  from prompt_jax.data import digits, fewshot, folder, vtab
  # pylint: enable=g-import-not-at-top,unused-import
  name = data_config.source
  if name not in _FACTORIES:
    raise KeyError(f'unknown data source {name!r}; known: {sorted(_FACTORIES)}')
  return _FACTORIES[name](data_config)
