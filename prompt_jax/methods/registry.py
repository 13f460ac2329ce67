"""The registries of methods and prompt initialisers, by name. Light (no JAX): the layers above
(the workdir's run identity, the programs) look a method up here, and its module, with JAX and
flax, is imported only then.

  METHODS.get('ship')       # imports prompt_jax.methods.ship on first use; its `register` fills it
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from prompt_jax.util import registry

METHODS: registry.Registry[Any] = registry.Registry('method', 'prompt_jax.methods')
# Prompt initialisers: name -> fn(params, ctx: PrepareContext, slots, config) -> params.
# 'default' keeps the method's own init; SPT registers 'spt'.
INITIALIZERS: registry.Registry[Callable[..., Any]] = registry.Registry(
    'prompt initialiser', 'prompt_jax.methods')
# Validation rules of a prompt initialiser: name -> fn(config) -> [message] (run when it is chosen).
INITIALIZER_CHECKS: dict[str, Callable[[Any], list[str]]] = {}
