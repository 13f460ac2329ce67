"""Finding and loading config files: `configs/x.py[:arg]` from the working directory, or else from
the installed package (`prompt_jax.configs`, the repository's configs/ folder)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from collections.abc import Sequence

import ml_collections

PACKAGE = 'prompt_jax.configs'


def _packaged(name: str):
  return importlib.resources.files(PACKAGE) / name


def available() -> list[str]:
  """The config files shipped with the package, e.g. ['configs/demo.py', ...]."""
  return sorted(f'configs/{p.name}' for p in importlib.resources.files(PACKAGE).iterdir()
                if p.name.endswith('.py') and not p.name.startswith('_') and p.name != 'common.py')


def resolve(spec: str) -> str:
  """'configs/ship_vtab.py:task=dtd' -> an existing file path + ':task=dtd'.

  A path that exists (relative to the working directory, or absolute) is used as is; otherwise
  'configs/NAME.py' or 'NAME.py' is looked up among the package's configs.
  """
  path, sep, arg = spec.partition(':')
  if os.path.exists(path):
    return spec
  name = path[len('configs/'):] if path.startswith('configs/') else path
  if '/' not in name and _packaged(name).is_file():
    return str(_packaged(name)) + sep + arg
  raise FileNotFoundError(f'config file {path!r} not found (from {os.getcwd()}) and not one of the '
                          f'packaged configs: {", ".join(available())}')


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads 'path.py[:arg]' (resolved as `resolve`) and returns its `get_config(arg)`."""
  path, _, arg = resolve(spec).partition(':')
  module_spec = importlib.util.spec_from_file_location('_prompt_jax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def resolve_argv(argv: Sequence[str]) -> list[str]:
  """argv with every `--config=SPEC` / `--config SPEC` resolved (see `resolve`)."""
  out = list(argv)
  for i, a in enumerate(out):
    if a.startswith('--config='):
      out[i] = '--config=' + resolve(a[len('--config='):])
    elif a == '--config' and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
  return out
