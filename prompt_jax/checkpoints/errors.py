"""Checkpoint validation: every load names what is missing, extra or mis-shaped, and a file that
cannot be read names its path and the format expected of it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np


class CheckpointError(ValueError):
  """A checkpoint that does not fit the model; the message names the offending keys."""


@contextlib.contextmanager
def reading(path: str, fmt: str, expected: str) -> Iterator[None]:
  """Turns any failure to read `path` (a truncated or corrupted zip, pickle, TorchScript or
  safetensors file: BadZipFile, UnpicklingError, EOFError, RuntimeError, ...) into a
  CheckpointError naming the path and the expected format. A missing file (FileNotFoundError), a
  missing package (ImportError) and CheckpointError pass through."""
  try:
    yield
  except (CheckpointError, FileNotFoundError, ImportError):
    raise
  except Exception as e:  # whatever the container library raises on a damaged file
    raise CheckpointError(
        f'cannot read checkpoint {path} as format {fmt!r} ({expected}): {type(e).__name__}: '
        f'{e}. The file is truncated or corrupted (download it again), or it is not a {fmt!r} '
        'checkpoint (check config.init.format).') from e


def _fmt(keys, limit: int = 20) -> str:
  keys = sorted(keys)
  more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def first_nonfinite(arrays: Mapping[str, np.ndarray]) -> str | None:
  """The first key (sorted) of a floating array holding NaN or inf, or None."""
  for k in sorted(arrays):
    a = np.asarray(arrays[k])
    if a.dtype.kind == 'f' or a.dtype.name == 'bfloat16':
      if not np.isfinite(a.astype(np.float32, copy=False)).all():
        return k
  return None


def validate(loaded: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], *,
             source: str) -> None:
  """Raises CheckpointError unless `loaded` has exactly the keys and shapes of `expected` and
  every floating tensor is finite (the first non-finite one is named)."""
  missing = set(expected) - set(loaded)
  extra = set(loaded) - set(expected)
  bad = {k: (tuple(np.shape(loaded[k])), tuple(expected[k])) for k in set(loaded) & set(expected)
         if tuple(np.shape(loaded[k])) != tuple(expected[k])}
  if not (missing or extra or bad):
    nonfinite = first_nonfinite(loaded)
    if nonfinite:
      raise CheckpointError(f'checkpoint {source}: tensor {nonfinite} holds NaN or inf values '
                            '(a damaged or diverged checkpoint); use an intact file')
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
