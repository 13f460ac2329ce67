"""Name -> data-source factory (`config.data.source`). A factory takes the `config.data`
ConfigDict and returns a Source; each source module registers its own (e.g.
`@SOURCES.register('vtab')` in data/vtab.py), found through the registry helper without a
hand-kept list."""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from prompt_jax.util import registry
from prompt_jax.data.source import Source

Factory = Callable[[ml_collections.ConfigDict], Source]
SOURCES: registry.Registry[Factory] = registry.Registry('data source', 'prompt_jax.data')
register = SOURCES.register


def get_source(data_config: ml_collections.ConfigDict) -> Source:
  """Builds the source named by `data_config.source` ('digits', 'vtab', 'folder', 'fewshot')."""
  return SOURCES.get(data_config.source)(data_config)
