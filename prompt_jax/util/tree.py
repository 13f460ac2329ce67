"""Pure functions over parameter pytrees: '/'-joined flat views, trainable/frozen split, counts,
finiteness and content digests."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from collections.abc import Sequence

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np


def flat(tree: Any) -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  return traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


def nest(flat_tree: dict[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dict."""
  return traverse_util.unflatten_dict(flat_tree, sep='/')


def paths(tree: Any) -> list[str]:
  """'/'-joined paths of a pytree's leaves, in `jax.tree_util` flatten order."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return ['/'.join(str(getattr(k, 'key', k)) for k in path) for path, _ in leaves]


def is_trainable(path: str, train_re: Sequence[str], frozen_re: Sequence[str]) -> bool:
  """A path trains when it matches a train regex and no frozen regex (frozen wins)."""
  return (any(re.search(r, path) for r in train_re)
          and not any(re.search(r, path) for r in frozen_re))


def split(params: Any, train_re: Sequence[str], frozen_re: Sequence[str]
          ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(trainable, frozen) nested dicts of `params` by the regexes over '/'-joined paths."""
  f = flat(params)
  mask = {k: is_trainable(k, train_re, frozen_re) for k in f}
  if not any(mask.values()):
    raise ValueError(f'no parameter matches the trainable patterns {tuple(train_re)} '
                     f'(minus frozen {tuple(frozen_re)}); parameter paths look like '
                     f'{sorted(f)[:5]}')
  return (nest({k: v for k, v in f.items() if mask[k]}),
          nest({k: v for k, v in f.items() if not mask[k]}))


def merge(trainable: Any, frozen: Any) -> dict[str, Any]:
  """The full nested params from `split`'s two halves (trainable wins on a clash)."""
  return nest({**flat(frozen), **flat(trainable)})


def count(tree: Any) -> int:
  """Number of scalars in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def _is_float(x: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def nonfinite_paths(tree: Any) -> list[str]:
  """'/'-joined paths of the float leaves holding a NaN or inf (host sync; empty when finite)."""
  leaves = jax.tree_util.tree_leaves(tree)
  flags = jax.device_get([jnp.isfinite(x).all() if _is_float(x) else True for x in leaves])
  return [p for p, ok in zip(paths(tree), flags) if not ok]


def all_finite(tree: Any) -> jax.Array:
  """Scalar bool: every float leaf of `tree` is finite (traceable: usable inside jit)."""
  oks = [jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree) if _is_float(x)]
  return jnp.all(jnp.stack(oks)) if oks else jnp.asarray(True)


def digest(tree: Any) -> str:
  """sha256 of a param pytree's content: sorted '/'-paths, dtypes, shapes and bytes (host copy).

  The same weights give the same digest whatever file or format they came from."""
  h = hashlib.sha256()
  for path, x in sorted(flat(tree).items()):
    a = np.ascontiguousarray(jax.device_get(x))
    h.update(f'{path}:{a.dtype.str}:{a.shape};'.encode())
    h.update(a.reshape(-1).view(np.uint8))
  return h.hexdigest()
