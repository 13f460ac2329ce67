"""Start-up checks of a config against the files it names, before TensorFlow is imported.

  preflight.check(config)            # main: raises validation.ConfigError, one line per problem
  preflight.flag_error(exc, argv)    # one line for a config file / override that does not parse

`validation.check` (every value of the config) plus what can be told from the file system alone:
the backbone weights file exists, the task is known, the split names are the source's (where known
without loading it: VTAB-1k, digits, the FGVC layout), the dataset is present under data.data_dir
(a prepared TFDS dataset's dataset_info.json, the folder layout's lists) and the training split
holds at least one batch when train.drop_last; then the workdir can be written and a run.json
there reads as a run record. A mistake costs a second, not the 60-80 s that importing TensorFlow
and loading the data take on 2 cores; the trainer checks again once loaded.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile

import ml_collections
from collections.abc import Callable, Sequence
from typing import Any

from prompt_jax.train import validation
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.data import digits
from prompt_jax.data import tasks

Config = ml_collections.ConfigDict
RANDOM = 'random'  # backbone.RANDOM (not imported: it pulls in flax)


def _remote(path: str) -> bool:
  return '://' in path


def _backbone(c: Config) -> list[str]:
  path = c.init.checkpoint
  if not path or path == RANDOM or _remote(path) or os.path.exists(path):
    return []
  return [f'init.checkpoint={path!r}: no such file or directory (from {os.getcwd()}); pass the '
          f'path of the backbone weights (format {c.init.format!r})']


def _tfds_root(d: Config) -> str:
  return os.path.expanduser(d.data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))


def _vtab(c: Config) -> tuple[list[str], int | None]:
  """(problems, training examples) of data.source='vtab'."""
  d = c.data
  name = tasks.TFDS_NAMES[tasks.canonical_task(d.task)]
  base, version = name.split(':')
  version = d.tfds_version or version
  root = _tfds_root(d)
  if not _remote(root) and not glob.glob(os.path.join(root, base, version, 'dataset_info.json')):
    return [f'data.task={d.task!r}: the TFDS dataset {base}:{version} is not prepared under '
            f'data.data_dir={root!r}; prepare it with `python -m prompt_jax.data.prepare '
            f'--tasks={tasks.canonical_task(d.task)} --data_dir={root}` or pass the '
            '--config.data.data_dir that holds it'], None
  return [], tasks.VTAB1K_SIZES.get(d.train_split)


def _folder(c: Config) -> tuple[list[str], int | None]:
  """(problems, training examples) of data.source='folder'."""
  d = c.data
  if not d.data_dir:
    return ['data.data_dir is empty: data.source=\'folder\' reads the image folders there'], None
  if _remote(d.data_dir):
    return [], None
  if d.layout == 'fgvc':
    lists = {s: os.path.join(d.data_dir, f'{s}.json') for s in tasks.FGVC_SPLITS}
  else:
    canon = tasks.canonical_task(d.task)
    names = list(dict.fromkeys([d.task, canon, tasks.FOLDER_NAMES.get(canon, canon)]))
    root = next((os.path.join(d.data_dir, n) for n in names
                 if os.path.isdir(os.path.join(d.data_dir, n))), None)
    if root is None:
      return [f'data.data_dir={d.data_dir!r} holds no folder of task {d.task!r} (one of '
              f'{names}) with the vtab-1k lists <split>.txt; pass the vtab-1k folder'], None
    lists = {s: os.path.join(root, f'{s}.txt') for s in (d.train_split, *d.eval_splits)}
  missing = [p for p in lists.values() if not os.path.exists(p)]
  if missing:
    return [f'{missing[0]} not found: data.layout={d.layout!r} expects it under '
            f'data.data_dir={d.data_dir!r}'], None
  train = lists.get(d.train_split)
  if train is None:
    return [], None
  with open(train) as f:
    n = len(json.load(f)) if train.endswith('.json') else sum(1 for ln in f if ln.strip())
  return [], n


def _data(c: Config) -> list[str]:
  d = c.data
  names = split_names(d)  # the source's split names, where known before loading it
  bad_splits = validation.split_problems(c, names) if names is not None else []
  if bad_splits:
    return bad_splits
  if d.source in ('vtab', 'folder') and not (d.source == 'folder' and d.layout == 'fgvc'):
    if not tasks.is_vtab_task(d.task):
      return [f'data.task={d.task!r}: not a VTAB-1k task; one of {", ".join(tasks.VTAB_TASKS)} '
              f'(or an alias: {", ".join(sorted(tasks.ALIASES))})']
  if d.source == 'vtab':
    out, n = _vtab(c)
  elif d.source == 'folder':
    out, n = _folder(c)
  elif d.source == 'digits' and d.task in tasks.DIGITS_SPLITS:
    out, n = [], digits.split_sizes(d.task).get(d.train_split)
  elif d.source == 'fewshot' and d.split_file and not os.path.exists(d.split_file):
    return [f'data.split_file={d.split_file!r}: no such file; pass the CoOp split JSON']
  else:
    return []
  t = c.train
  if n is not None and t.drop_last and t.batch_size > n:
    out.append(validation.batch_exceeds(c, n))
  return out


def _workdir(workdir: str) -> list[str]:
  """Creates `workdir` and a probe file in it (only once the config passed: a mistake leaves no
  directory behind); a run.json there must read as a run record."""
  if _remote(workdir):
    return []
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    return [f'--workdir={workdir}: cannot write there ({type(e).__name__}: {e.strerror}); pass a '
            'directory on a writable disk']
  try:  # a damaged run.json: the run cannot tell whose results the workdir holds
    workdir_lib.read_run(workdir)
  except workdir_lib.WorkdirError as e:
    return [str(e)]
  return []


def split_names(data: Any) -> tuple[str, ...] | None:
  """The split names `data` (a config's data section, or its JSON dict) offers, told without
  loading the source; None where only the loaded source can tell."""
  source, task = data.get('source'), data.get('task')
  if source == 'vtab':
    return tasks.VTAB1K_SPLITS
  if source == 'digits':
    return tasks.DIGITS_SPLITS.get(task)
  if source == 'folder' and data.get('layout') == 'fgvc':
    return tasks.FGVC_SPLITS
  return None


def check(config: Config, workdir: str | None = None, *,
          rules: Sequence[Callable[[Config], list[str]]] = ()) -> None:
  """Raises validation.ConfigError naming every problem found, each with its fix (`rules`: more
  rules from the layers above, see `validation.check`); then, with `workdir`, creates it and
  checks that it can be written."""
  try:
    validation.check(config, rules=rules)
    problems = []
  except validation.ConfigError as e:
    lines = str(e).splitlines()
    problems = [ln.strip() for ln in lines[1:]] if lines[0] == 'invalid config:' else [str(e)]
  problems += _backbone(config)
  if not any(p.startswith('data.') for p in problems):
    problems += _data(config)
  if not problems and workdir:
    problems = _workdir(workdir)
  if len(problems) == 1:
    raise validation.ConfigError(problems[0])
  if problems:
    raise validation.ConfigError('invalid config:\n' + '\n'.join(f'  {p}' for p in problems))


def _innermost(e: BaseException) -> object:
  x: object = e
  while isinstance(x, BaseException) and x.args:
    x = x.args[0]
  return x


def flag_error(e: BaseException, argv: list[str]) -> str:
  """One line for an exception raised while absl parses `argv` (the config file and its
  `--config.a.b=v` overrides): the bad override or file and the fix."""
  if isinstance(e, SyntaxError):
    return (f'the config file {e.filename or ""} does not parse: {e.msg} (line {e.lineno}); fix '
            'the file')
  if isinstance(e, (AttributeError, KeyError)):
    text = str(_innermost(e))
    key = text.splitlines()[0].strip('\'"') if text else ''
    hint = ' '.join(text.splitlines()[1:])
    bad = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')
           and (f'.{key}=' in a or f'.{key}.' in a)]
    return (f'unknown config key {key!r} in {bad[0] if bad else "an override"}'
            f'{": " + hint if hint else ""}; --show_config lists every field')
  raw = str(e)
  if 'Traceback (most recent call last)' in raw:  # the config file's get_config raised: its error
    where = raw.split(': Error whilst parsing', 1)[0] if ': Error whilst' in raw else 'config'
    last = [line.strip() for line in raw.splitlines() if line.strip()][-1]
    return f'{where}: {last}'
  text = ' '.join(raw.split())
  kind = '' if text.startswith('flag ') else f'{type(e).__name__}: '
  return f'{kind}{text}; --show_config lists every field'
