"""Helpers for a method's PyTorch release naming (`ModelParts.torch_naming`, used by
prompt_jax/export/torch_state.py): flat tuned tensors ('prompt/prompts', 'head/kernel') <-> the
release's state dict names, in PyTorch layout (Linear weights [out, in])."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TorchNaming:
  """to_torch(flat tensors, config) -> state dict, popping what it names; from_torch(state dict,
  config) -> flat tensors, popping what it reads; release: whose names these are."""
  to_torch: Callable[[Arrays, Any], Arrays]
  from_torch: Callable[[Arrays, Any], Arrays]
  release: str


def head(prefix: str) -> tuple[Callable[[Arrays], Arrays], Callable[[Arrays], Arrays]]:
  def fwd(t: Arrays) -> Arrays:
    out = {}
    if 'head/kernel' in t:
      out[f'{prefix}.weight'] = t.pop('head/kernel').T
      out[f'{prefix}.bias'] = t.pop('head/bias')
    return out

  def inv(sd: Arrays) -> Arrays:
    out = {}
    if f'{prefix}.weight' in sd:
      out['head/kernel'] = sd.pop(f'{prefix}.weight').T
      out['head/bias'] = sd.pop(f'{prefix}.bias')
    return out
  return fwd, inv


def convert(names: Arrays, pairs: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]]
            ) -> Arrays:
  """Pops every key of `names` matching a pair's first template ('{}' = a layer index) and returns
  fn(value) under the second (pairs: (from, to, fn))."""
  out = {}
  for key in sorted(names):
    for src, dst, fn in pairs:
      m = re.fullmatch(re.escape(src).replace(r'\{\}', r'(\d+)'), key)
      if m:
        out[dst.format(*m.groups())] = fn(names.pop(key))
        break
  return out


def rename(names: Arrays, pairs: list[tuple[str, str]]) -> Arrays:
  """`convert` with q/k/v biases flattened ([H, d] -> [H*d], reshaped on import); other tensors
  keep their shape (cls_token [1, 1, D] as timm's)."""
  flat = lambda v: v.reshape(-1) if v.ndim == 2 else v
  return convert(names, [(src, dst, flat) for src, dst in pairs])


def transposed(pairs: list[tuple[str, str]]) -> tuple[list, list]:
  """(to-torch, from-torch) `convert` pairs for tensors that are Linear weights ([in, out] here,
  [out, in] in PyTorch) when their torch name ends in '.weight', kept as they are otherwise."""
  fn = lambda dst: np.transpose if dst.endswith('.weight') else (lambda v: v)
  return ([(a, b, fn(b)) for a, b in pairs], [(b, a, fn(b)) for a, b in pairs])


def paired(pairs: tuple[list, list], release: str, *, head_name: str = 'head',
           check: Callable[[Any], None] | None = None) -> TorchNaming:
  """A `TorchNaming` of (to-torch, from-torch) `convert` pairs plus the head as
  `head_name`.{weight,bias}; `check(config)` raises for a config without release names."""
  head_fwd, head_inv = head(head_name)

  def to_torch(t: Arrays, config: Any) -> Arrays:
    if check is not None:
      check(config)
    return {**convert(t, pairs[0]), **head_fwd(t)}

  def from_torch(sd: Arrays, config: Any) -> Arrays:
    del config
    return {**convert(sd, pairs[1]), **head_inv(sd)}
  return TorchNaming(to_torch, from_torch, release)
