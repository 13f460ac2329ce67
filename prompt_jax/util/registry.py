"""One small registry helper: plug-ins are found by name, never by a hand-kept list.

  METHODS = Registry('method', 'prompt_jax.methods')

  @METHODS.register('ship')          # in prompt_jax/methods/ship.py
  def ...

  METHODS.get('ship')                 # imports prompt_jax.methods.ship on first use

`get(name)` first imports `<package>.<name>` (the big_vision convention: a plug-in named after its
module), and only if that does not register `name`, every public module of the package. So a
registry never imports its plug-ins at import time, and adding a plug-in is one new file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Generic, TypeVar
from collections.abc import Callable

T = TypeVar('T')


class Registry(Generic[T]):
  """Name -> object, filled by `register` decorators in the modules of `package`."""

  def __init__(self, kind: str, package: str):
    self.kind = kind
    self.package = package
    self._items: dict[str, T] = {}
    self._scanned = False

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator (or call: `REG.register('x')(obj)`) adding `obj` under `name`."""

    def wrap(obj: T) -> T:
      if name in self._items and self._items[name] is not obj:
        raise ValueError(f'{self.kind} {name!r} registered twice')
      self._items[name] = obj
      return obj

    return wrap

  def unregister(self, name: str) -> None:
    """Removes `name` (a plug-in registered from outside the package, e.g. by a test)."""
    self._items.pop(name, None)

  def _import_module_named(self, name: str) -> None:
    if not name.isidentifier():
      return
    try:
      importlib.import_module(f'{self.package}.{name}')
    except ModuleNotFoundError as e:
      if e.name != f'{self.package}.{name}':
        raise

  def _scan(self) -> None:
    if self._scanned:
      return
    package = importlib.import_module(self.package)
    for info in pkgutil.iter_modules(package.__path__):
      if not info.name.startswith('_'):
        importlib.import_module(f'{self.package}.{info.name}')
    self._scanned = True

  def get(self, name: str) -> T:
    if name not in self._items:
      self._import_module_named(name)
    if name not in self._items:
      self._scan()
    if name not in self._items:
      raise KeyError(f'unknown {self.kind} {name!r}; known: {", ".join(self.names())}')
    return self._items[name]

  def has_module_for(self, name: str) -> bool:
    """`name` is registered, or a module `<package>.<name>` exists (not imported: no
    TensorFlow at start-up; `get` still checks that it registers `name`)."""
    if name in self._items:
      return True
    return name.isidentifier() and importlib.util.find_spec(f'{self.package}.{name}') is not None

  def names(self) -> list[str]:
    """Every registered name (imports the whole package once)."""
    self._scan()
    return sorted(self._items)

  def __contains__(self, name: str) -> bool:
    try:
      self.get(name)
    except KeyError:
      return False
    return True
