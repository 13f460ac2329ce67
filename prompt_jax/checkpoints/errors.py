"""Checkpoint validation: every load names what is missing, extra or mis-shaped."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class CheckpointError(ValueError):
  """A checkpoint that does not fit the model; the message names the offending keys."""


def _fmt(keys, limit: int = 20) -> str:
  keys = sorted(keys)
  more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def validate(loaded: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], *,
             source: str) -> None:
  """Raises CheckpointError unless `loaded` has exactly the keys and shapes of `expected`."""
  missing = set(expected) - set(loaded)
  extra = set(loaded) - set(expected)
  bad = {k: (tuple(np.shape(loaded[k])), tuple(expected[k])) for k in set(loaded) & set(expected)
         if tuple(np.shape(loaded[k])) != tuple(expected[k])}
  if not (missing or extra or bad):
    return
  lines = [f'checkpoint {source} does not fit the model:']
  if missing:
    lines.append(f'  missing {len(missing)} key(s): {_fmt(missing)}')
  if extra:
    lines.append(f'  unexpected {len(extra)} key(s): {_fmt(extra)}')
  if bad:
    lines.append(f'  {len(bad)} mis-shaped key(s): ' + _fmt(
        [f'{k} (checkpoint {a}, model {b})' for k, (a, b) in bad.items()]))
  lines.append('  (check config.model.variant / config.init.format; image size changes are handled '
               'by position-embedding resize)')
  raise CheckpointError('\n'.join(lines))
