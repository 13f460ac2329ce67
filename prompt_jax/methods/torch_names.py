"""Helpers for a method's PyTorch release naming (`Method.torch_naming`, used by
prompt_jax/torch_export.py): flat tuned tensors ('prompt/prompts', 'head/kernel') <-> the
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


def rename(names: Arrays, pairs: list[tuple[str, str]]) -> Arrays:
  """Pops every key of `names` matching a template's left side ('{}' = a layer index) and returns
  it under the right side; q/k/v biases are flattened ([H, d] -> [H*d]), reshaped on import; other
  tensors keep their shape (cls_token [1, 1, D] as timm's)."""
  out = {}
  for key in sorted(names):
    for src, dst in pairs:
      m = re.fullmatch(re.escape(src).replace(r'\{\}', r'(\d+)'), key)
      if m:
        v = names.pop(key)
        out[dst.format(*m.groups())] = v.reshape(-1) if v.ndim == 2 else v
        break
  return out
