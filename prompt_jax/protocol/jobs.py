"""A sweep's pending jobs as a file for a scheduler: one shell command per line.

  python -m prompt_jax.protocol.sweep ... --dry_run --jobs_file=jobs.txt
  sbatch --array=1-$(wc -l < jobs.txt) run_line.sh   # docs/multi_host.md: a SLURM array

Every line runs from any directory: the config file, the backbone weights (`init.checkpoint`) and a
local `data.data_dir` are absolute paths (the weights are checked to exist: a missing file is an
error here, not 760 failed jobs later), the interpreter is this one (`sys.executable`), and every
argument is quoted with `shlex.quote`; tuple values are written with double quotes inside
(`("val200",)`) so the quoting stays readable.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
import os
import shlex
import sys
from prompt_jax.util import config_files

_PATH_KEYS = ('--config.init.checkpoint', '--config.data.data_dir')


def _value(text: str) -> str:
  """A tuple / list literal with string items, re-written with double quotes; else unchanged."""
  if text[:1] not in '([' or "'" not in text:
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  if not isinstance(value, (tuple, list)) or not all(isinstance(v, (str, int, float))
                                                     for v in value):
    return text
  items = ', '.join('"' + v + '"' if isinstance(v, str) else repr(v) for v in value)
  if any('"' in v or '\\' in v for v in value if isinstance(v, str)):
    return text
  return f'({items},)' if isinstance(value, tuple) else f'[{items}]'


def _absolute(path: str, base: str) -> str:
  if not path or path == 'random' or '://' in path or os.path.isabs(path):
    return path
  return os.path.normpath(os.path.join(base, path))


def job_line(command: str, *, base: str | None = None, python: str | None = None) -> str:
  """One `python -m prompt_jax.main ...` command (as the sweep's --dry_run prints it) -> a line
  that runs from any directory. Raises FileNotFoundError for missing weights."""
  base = base or os.getcwd()
  argv = shlex.split(command)
  if argv[1:3] != ['-m', 'prompt_jax.main']:
    raise ValueError(f'not a prompt_jax.main command: {command[:80]}')
  out = [python or sys.executable, '-m', 'prompt_jax.main']
  for a in argv[3:]:
    key, eq, value = a.partition('=')
    if key == '--config':
      path, sep, arg = config_files.resolve(value).partition(':')
      value = os.path.abspath(path) + sep + arg
    elif key in _PATH_KEYS:
      value = _absolute(value, base)
      if key == '--config.init.checkpoint' and value not in ('', 'random') and (
          '://' not in value and not os.path.exists(value)):
        raise FileNotFoundError(
            f'backbone weights {value} (--config.init.checkpoint) do not exist; every job would '
            'fail. Give the path of the checkpoint file (e.g. ViT-B_16.npz)')
    elif key.startswith('--config.'):
      value = _value(value)
    out.append(key + eq + value if eq else a)
  return shlex.join(out)


def write(path: str, commands: Sequence[str], *, base: str | None = None) -> int:
  """Writes one job line per command to `path`; returns the number of lines."""
  lines = [job_line(c, base=base) for c in commands]
  with open(path, 'w') as f:
    f.writelines(line + '\n' for line in lines)
  return len(lines)
