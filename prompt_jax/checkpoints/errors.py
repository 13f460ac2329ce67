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
    why = ' '.join(str(e).split())[:300]
    raise CheckpointError(
        f'cannot read checkpoint {path} as format {fmt!r} ({expected}): {type(e).__name__}: '
        f'{why}. The file is truncated or corrupted (download it again), or it is not a {fmt!r} '
        'checkpoint (check config.init.format).') from e


def _fmt(keys, limit: int = 20) -> str:
  keys = sorted(keys)
  more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def nonfinite(arrays: Mapping[str, np.ndarray]) -> list[str]:
  """The keys (sorted) of floating arrays holding NaN or inf."""
  out = []
  for k in sorted(arrays):
    a = np.asarray(arrays[k])
    if (a.dtype.kind == 'f' or a.dtype.name == 'bfloat16') and not np.isfinite(
        a.astype(np.float32, copy=False)).all():
      out.append(k)
  return out


def validate(loaded: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], *,
             source: str) -> None:
  """Raises CheckpointError (one line) unless `loaded` has exactly the keys and shapes of
  `expected` and every floating tensor is finite (the non-finite ones are named)."""
  missing = set(expected) - set(loaded)
  extra = set(loaded) - set(expected)
  bad = {k: (tuple(np.shape(loaded[k])), tuple(expected[k])) for k in set(loaded) & set(expected)
         if tuple(np.shape(loaded[k])) != tuple(expected[k])}
  if not (missing or extra or bad):
    bad_values = nonfinite(loaded)
    if bad_values:
      raise CheckpointError(
          f'checkpoint {source} holds NaN / inf values in {len(bad_values)} tensor(s): '
          f'{bad_values[:10]}; the file is damaged or not a trained model')
    return
  lines = [f'checkpoint {source} does not fit the model']
  if missing:
    lines.append(f'missing {len(missing)} key(s): {_fmt(missing)}')
  if extra:
    lines.append(f'unexpected {len(extra)} key(s): {_fmt(extra)}')
  if bad:
    lines.append(f'{len(bad)} mis-shaped key(s): ' + _fmt(
        [f'{k} (checkpoint {a}, model {b})' for k, (a, b) in bad.items()]))
  lines.append('check config.model.variant / config.init.format (image size changes are handled '
               'by position-embedding resize)')
  raise CheckpointError('; '.join(lines))
