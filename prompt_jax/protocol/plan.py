"""The sweep's plan, without running anything: jobs (one `prompt_jax.main` run each), their
configs parsed as main parses them, which jobs finished (the one "same run" rule,
`workdir.diff`), grids and selection on val only. `prompt_jax/protocol/sweep.py` runs a plan.

  plan = Plan(config='configs/vpt_vtab.py', tasks=('dtd',), seeds=(0,), workdir=DIR, ...)
  jobs = plan.trials('dtd')                 # or plan.runs(task) without a search
  chosen = select('dtd', jobs, results, plan.search, 'val200')
  plan.finals('dtd', chosen['chosen'])
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections

from prompt_jax.util import config_files
from prompt_jax.protocol import programs
from prompt_jax.protocol import searches as protocol
from prompt_jax.util import checks
from prompt_jax.train import workdir as workdir_lib

FAILED = 'sweep_failed.json'
SELECTION = 'selection.json'
# The task axis: set by --tasks (each job's `:task=T`), never by an override.
TASK_KEYS = ('data.task', 'recipe_task')


class SweepError(ValueError):
  """The sweep cannot go on as asked (the message names the fix)."""


# ----------------------------------------------------------------------------- jobs


@dataclasses.dataclass(frozen=True)
class Job:
  """One `python -m prompt_jax.main` run."""

  task: str
  seed: int
  phase: str                                 # 'run' (no search) | 'trial' | 'final'
  workdir: str
  spec: str                                  # 'configs/vpt_vtab.py:task=dtd,deep=False'
  overrides: tuple[tuple[str, str], ...]     # (dotted key, value as written), in order
  trial: str = ''                            # e.g. 'lr0.5_wd0.001'

  def argv(self) -> list[str]:
    return ([f'--config={self.spec}', f'--workdir={self.workdir}'] +
            [f'--config.{k}={v}' for k, v in self.overrides])

  def command(self, python: str = 'python') -> str:
    return shlex.join([python, '-m', 'prompt_jax.main', *self.argv()])

  @property
  def name(self) -> str:
    return f'{self.task}/{os.path.basename(self.workdir)}'


def value_text(value: Any) -> str:
  """A config value as main's --config.x=y parser reads it back."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def task_spec(config: str, task: str) -> str:
  """'configs/vpt_vtab.py:deep=False', 'dtd' -> 'configs/vpt_vtab.py:task=dtd,deep=False'."""
  path, _, arg = config.partition(':')
  tokens = [t.strip() for t in arg.split(',') if t.strip()]
  if tokens and ('=' not in tokens[0] or tokens[0].startswith('task=')):
    raise SweepError(f'--config={config}: the sweep sets the task (--tasks); give only the other '
                     f'config arguments, e.g. --config={path}:deep=False')
  return f'{path}:' + ','.join([f'task={task}'] + tokens)


def parse_config(argv: Sequence[str]) -> ml_collections.ConfigDict:
  """The config main builds from `argv` (its --config / --config.x=y flags), with main's parser:
  ml_collections' config_flags on a private flag set; unknown keys are errors."""
  from absl import flags
  from ml_collections import config_flags
  argv = ['prompt_jax.main'] + config_files.resolve_argv(
      [a for a in argv if not a.startswith('--workdir=')])
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file('config', None, 'config file', flag_values=fv,
                                           lock_config=True, sys_argv=argv)
  try:
    fv(argv)
  except (KeyError, AttributeError, flags.Error) as e:
    raise SweepError(f'{" ".join(argv[1:])}: {e} (an unknown config key or a bad value)') from e
  return holder.value


def job_config(job: Job) -> ml_collections.ConfigDict:
  return parse_config(job.argv())


def program(config: ml_collections.ConfigDict) -> programs.Program:
  """The job's program (`programs.get`): what runs, its result file and recorded config."""
  try:
    return programs.get(config)
  except ValueError as e:
    raise SweepError(str(e)) from None


def result_file(config: ml_collections.ConfigDict) -> str:
  return program(config).result_file


def _read_json(path: str) -> dict[str, Any] | None:
  """The file's JSON; None when it is missing or unreadable (a run killed while writing it:
  rerunning resumes it from its checkpoints and rewrites the file)."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError:
    _say(f'{path} is not valid JSON (a write was interrupted?): running that job again')
    return None


def config_differences(recorded: dict[str, Any], config: ml_collections.ConfigDict
                       ) -> list[str]:
  """'key: recorded -> now' for every field in which a finished run's recorded config is not the
  same run as `config` (`workdir.diff`, the one rule: another machine's paths and mesh ignored)."""
  return [f'{k}: {a!r} -> {b!r}'
          for k, (a, b) in workdir_lib.diff(recorded, workdir_lib.config_dict(config)).items()]


def finished(job: Job, config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """The job's results when it has finished, else None. A finished run recorded with another
  config is an error: skipping it would put a stale number in the table."""
  prog = program(config)
  results = _read_json(os.path.join(job.workdir, prog.result_file))
  if results is None:
    return None
  recorded = prog.recorded(results)
  if recorded is not None:
    diff = config_differences(recorded, prog.effective(config))
    if diff:
      raise SweepError(
          f'{job.workdir} finished with another config than this sweep gives it:\n  ' +
          '\n  '.join(diff[:8]) + '\nUse another --workdir, or delete that run to redo it.')
  return results


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass
class Plan:
  """What the sweep runs: its arguments, resolved."""

  config: str
  tasks: tuple[str, ...]
  seeds: tuple[int, ...]
  workdir: str
  search: protocol.Search | None
  search_name: str
  overrides: tuple[tuple[str, str], ...]

  def user_overrides(self, task: str) -> list[tuple[str, str]]:
    return [(k, v.replace('{task}', task)) for k, v in self.overrides]

  def base_config(self, task: str) -> ml_collections.ConfigDict:
    spec = task_spec(self.config, task)
    return parse_config([f'--config={spec}'] +
                        [f'--config.{k}={v}' for k, v in self.user_overrides(task)])

  def _seed_overrides(self, config: ml_collections.ConfigDict, seed: int
                      ) -> list[tuple[str, str]]:
    out = [('seed', str(seed))]
    if config.data.source == 'fewshot':  # CoOp protocol: the seed also draws the shots
      out.append(('data.fewshot_seed', str(seed)))
    return out

  def runs(self, task: str) -> list[Job]:
    """--search=none: one job per seed with the recipe's own values."""
    cfg = self.base_config(task)
    spec = task_spec(self.config, task)
    return [Job(task, s, 'run', os.path.join(self.workdir, task, f'seed{s}'), spec,
                tuple(self._seed_overrides(cfg, s) + self.user_overrides(task)))
            for s in self.seeds]

  def splits(self, task: str) -> tuple[str, str, str]:
    cfg = self.base_config(task)
    layout = cfg.data.layout if cfg.data.source == 'folder' else cfg.data.source
    return protocol.search_splits(self.search, layout)

  def trials(self, task: str) -> list[Job]:
    """--search: one job per grid point, on the train split, scored on the val split only."""
    cfg = self.base_config(task)
    train, val, _ = self.splits(task)
    spec = task_spec(self.config, task)
    seed = self.seeds[0]
    jobs = []
    for values in self.search.trials():
      name = 'trial_' + '_'.join(f'{k.rsplit(".", 1)[-1]}{v:g}' for k, v in values.items())
      over = (self._seed_overrides(cfg, seed) + [(k, value_text(v)) for k, v in values.items()] +
              [('data.train_split', train), ('data.eval_splits', value_text((val,))),
               ('data.val_split', val)] + self.user_overrides(task))
      jobs.append(Job(task, seed, 'trial', os.path.join(self.workdir, task, name), spec,
                      tuple(over), trial=name))
    return jobs

  def finals(self, task: str, chosen: dict[str, Any]) -> list[Job]:
    """The selected values retrained on the final split with every seed, scored on test."""
    cfg = self.base_config(task)
    _, _, final = self.splits(task)
    spec = task_spec(self.config, task)
    return [Job(task, s, 'final', os.path.join(self.workdir, task, f'seed{s}'), spec,
                tuple(self._seed_overrides(cfg, s) + [(k, value_text(v)) for k, v in chosen.items()]
                      + [('data.train_split', final), ('data.eval_splits', "('test',)"),
                         ('data.val_split', '')] + self.user_overrides(task)))
            for s in self.seeds]


def check_job(job: Job, config: ml_collections.ConfigDict) -> None:
  """What no job may do: a warm-up longer than training; a search trial reading test."""
  for problem in checks.warmup_within(config.train):
    raise SweepError(f'{job.name}: {problem}')
  if job.phase == 'trial':
    check_no_test(job, config)


def check_no_test(job: Job, config: ml_collections.ConfigDict) -> None:
  """A search trial must not train or evaluate on a test split: selection never reads test."""
  used = [config.data.train_split, config.data.val_split, *config.data.eval_splits]
  bad = [s for s in used if s in protocol.TEST_SPLITS]
  if bad:
    raise SweepError(f'search trial {job.name} would use the test split ({bad}); selection must '
                     'never read test. Do not override data.train_split / eval_splits / '
                     'val_split in a search.')


def select(task: str, trials: Sequence[Job], results: dict[str, dict[str, Any]],
           search: protocol.Search, val: str) -> dict[str, Any]:
  """The best trial by its final-epoch accuracy on `val` (ties: smaller lr, then grid order).
  Reads only `val` scores; a trial result holding a test score is an error."""
  scored = []
  for order, job in enumerate(trials):
    r = results.get(job.workdir)
    if r is None:
      continue
    evaluated = set(r.get('splits', {}).get('eval', ())) | set(r.get('final', {}))
    if evaluated & set(protocol.TEST_SPLITS):
      raise SweepError(f'{job.workdir}: a search trial evaluated a test split; selection never '
                       'reads test')
    values = dict(zip(search.grid, search.trials()[order].values()))
    scored.append((float(r['final'][val]), -float(values.get('train.lr', 0.0)), -order,
                   job.trial, values))
  if not scored:
    raise SweepError(f'{task}: no search trial finished; nothing to select from')
  best = max(scored)
  return {'task': task, 'val_split': val, 'chosen': best[4], 'trial': best[3],
          'val_accuracy': best[0],
          'trials': {t: {'val_accuracy': v, **vals} for v, _, _, t, vals in scored},
          'trials_missing': [j.trial for j in trials if j.workdir not in results]}


def selection_labels(plan: Plan) -> dict[str, str]:
  if plan.search:
    train, val, final = plan.search.train_split, plan.search.val_split, plan.search.final_split
    return {'final': f'val-selected hyperparameters ({plan.search_name} grid, {train} -> {val}; '
                     f'final epoch on {final} -> test)'}
  return {'final': 'recipe hyperparameters, final epoch',
          'val_selected': 'recipe hyperparameters, val-selected epoch',
          'test_selected': 'recipe hyperparameters, test-selected epoch (as released)'}


def _say(msg: str) -> None:
  print(f'[sweep] {msg}', flush=True)
