"""The seam for methods that change a block's computation instead of (or besides) its tokens.

A prompter declares them per block in `Tokens.deltas` (a `Deltas`), as it declares its tokens: the
functions close over the prompter's own parameters (under `prompt/`), the frozen backbone stays a
separate argument and untouched. Blocks apply them as follows (models/vit.py):

  q, k, v = query(y) + dq, key(y) + dk, value(y) + dv      (dq, dk, dv) = qkv(y), y = LN_0(x)
  h = DropPath(MHA(y));        x = x + h + attn(h)          when attn is set
  h = DropPath(MLP(LN_2(x)));  x = x + h + mlp(h)           when mlp is set

qkv(y): y [..., D] the normed tokens that are projected (live, and key/value-only ones) ->
  (dq, dk, dv), each [..., H, Dh] or None (no change), added to that projection's output (LoRA).
attn(h) / mlp(h): h [..., D] the branch's output (after drop path) -> [..., D], added to it: a
  residual branch on the attention / MLP output (an adapter).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

Array = Any
QKVDelta = Callable[[Array], tuple[Array | None, Array | None, Array | None]]


@dataclasses.dataclass(frozen=True)
class Deltas:
  """One block's changes (see the module docstring); None: that part unchanged."""

  qkv: QKVDelta | None = None
  attn: Callable[[Array], Array] | None = None
  mlp: Callable[[Array], Array] | None = None


def add(x: Array, delta: Array | None) -> Array:
  """x + delta (delta None: x)."""
  return x if delta is None else x + delta.astype(x.dtype)


def branch(fn: Callable[[Array], Array] | None, h: Array) -> Array:
  """h + fn(h) (fn None: h)."""
  return h if fn is None else h + fn(h).astype(h.dtype)
