"""Helpers shared by the parameter-efficient baselines (lora.py, adapter.py, prefix.py).

Their sections hold the release's two knobs: `dim` (its SUPERNET.*_DIM: every block) and `dims`
(its RETRAIN.*_DIM list: one value per block, 0 = none there; empty: `dim` in every block).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from prompt_jax.methods import base


def block_dims(section: Any, name: str, depth: int, variant: str) -> tuple[int, ...]:
  """The per-block dims of `config.<name>` for a ViT of `depth` blocks (`variant`: its name in
  messages); a bad value is a ValueError that names the field and the fix."""
  dims = tuple(int(d) for d in section.dims) or (int(section.dim),) * depth
  if len(dims) != depth:
    raise ValueError(f'{name}.dims has {len(dims)} values but {variant} has {depth} blocks: give '
                     f'one per block (0 = none in that block), or dims=() and {name}.dim for '
                     'every block')
  if any(d < 0 for d in dims) or not any(dims):
    raise ValueError(f'{name}.dims={dims}: need values >= 0, at least one > 0')
  return dims


def check_rate(value: float, field: str) -> float:
  if not 0.0 <= value < 1.0:
    raise ValueError(f'{field}={value}: a dropout rate in [0, 1)')
  return float(value)


def checker(build_prompter: Callable[[Any, Any, Any], Any]) -> Callable[[Any], list[str]]:
  """A `Method.check` from the method's own `build_prompter`: its ValueErrors (each naming the
  field and the fix) become validation messages, found at start-up instead of at model build."""
  def check(config: Any) -> list[str]:
    try:
      arch = base.get(config.method).arch(config)
    except ValueError:
      return []  # an unknown model.variant: the model's rules report it
    try:
      build_prompter(config, arch, None)
    except ValueError as e:
      return [str(e)]
    return []
  return check
