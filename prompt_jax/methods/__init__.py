"""Prompt methods; importing this package registers every method (see `base.get`)."""

import importlib

from prompt_jax.methods import base
from prompt_jax.methods import baselines
from prompt_jax.methods import vpt

# Methods written in their own files; each registers itself on import.
for _name in ('ship', 'davpt', 'spt', 'sap'):
  try:
    importlib.import_module(f'prompt_jax.methods.{_name}')
  except ModuleNotFoundError as e:
    if e.name != f'prompt_jax.methods.{_name}':
      raise
