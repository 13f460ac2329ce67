r"""The whole protocol in one command: every task, per-task recipes, search, seeds, one table.

  python -m prompt_jax.sweep --config=configs/vpt_vtab.py --tasks=vtab --search=vpt \
      --seeds=42,44,82,100,800 --workdir=DIR --config.init.checkpoint=ViT-B_16.npz
  python -m prompt_jax.sweep --config=configs/ship_vtab.py --tasks=natural,eurosat --seeds=0,1,2 \
      --workdir=DIR --config.init.checkpoint=ViT-B_16.npz          # the recipes' own values
  ... --dry_run      # print one `python -m prompt_jax.main ...` command per job still to run

Jobs. Each (task, seed[, trial]) is one `prompt_jax.main` run in its own workdir:
DIR/<task>/seed<S> (final runs), DIR/<task>/trial_<lr..._wd...> (search trials). The job's config
is `--config=FILE:task=T[,ARG]` (the config file applies that task's per-task recipe) plus the
sweep's own settings (seed, and under a search the trial's values and splits) plus the user's
`--config.x=y` overrides, parsed exactly as main parses them; `{task}` in an override value is
replaced by the task (e.g. `--config.data.data_dir=/data/fgvc/{task}`). `--dry_run` prints these
commands, so any scheduler (a SLURM array, Kubernetes Jobs, XManager) can run them; running the
sweep afterwards with the same arguments skips them and writes the table.

Resuming. A job whose workdir has its results file is skipped (its recorded config must equal the
job's, else the sweep stops naming the difference); an interrupted job resumes from its
checkpoints; a failing job is recorded (DIR/<job>/sweep_failed.json, and the summary lists its
error line) and the sweep goes on. Rerunning the same command finishes what is left, on this
machine or another with the same DIR.

Selection (`--search`):
  none  each task's recipe values (SHIP, DA-VPT, SPT ship theirs); the table reports the final
        epoch, and where the config evaluates a val split, the val-selected epoch and the
        test-selected epoch (as the releases report), each labelled.
  vpt   VPT's grid (protocol.SEARCHES): every (lr, wd) trains on train800 with the first seed and
        is scored by its final-epoch val200 accuracy; no trial evaluates a test split (asserted).
        The best of the trials that finished (ties: smaller lr; failed trials are listed) is
        written to DIR/<task>/selection.json, which later reruns reuse (delete it to select
        again), and retrained on train800val200 with every seed, scored on test. `--lrs` / `--wds`
        replace the grid's values.

Output: DIR/report.{md,csv,png} (per-task top-1 as mean ± std over seeds, Natural / Specialized /
Structured and overall means, each row labelled by its selection) and DIR/sweep.json (jobs, their
status, selections, failures and the table). Progress: run i of N, the run's own progress (the
trainer's log), and an ETA from the runs finished so far.

Several processes: `--shard=I/N` runs only the tasks I, I+N, ... (e.g. one process per device
group: `CUDA_VISIBLE_DEVICES=0 ... --shard=0/2`); a last unsharded call writes the whole table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any

import ml_collections

from prompt_jax import config_files
from prompt_jax import protocol
from prompt_jax import report

RESULT_FILES = {'train': 'results.json', 'b2n': 'b2n.json'}
FAILED = 'sweep_failed.json'
SELECTION = 'selection.json'
# Config fields that may differ between a finished run and its rerun (another machine's paths).
_MACHINE_KEYS = ('data.data_dir', 'data.image_root', 'data.split_file', 'sap.descriptions',
                 'sap.bpe_path', 'mesh.distributed', 'mesh.fsdp')


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


def result_file(config: ml_collections.ConfigDict) -> str:
  program = config.get('program', 'train')
  if program not in RESULT_FILES:
    raise SweepError(f'config.program={program!r}: the sweep runs {sorted(RESULT_FILES)}')
  return RESULT_FILES[program]


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
  """'key: recorded -> now' for every field in which a finished run's recorded config differs
  from `config` (paths that depend on the machine ignored; checkpoints compared by file name)."""
  want = report.flat_config(json.loads(config.to_json()))
  have = report.flat_config(recorded)
  out = []
  for k in sorted(set(want) | set(have)):
    a, b = have.get(k), want.get(k)
    if k in _MACHINE_KEYS:
      continue
    if k == 'init.checkpoint':
      a, b = os.path.basename(str(a or '')), os.path.basename(str(b or ''))
    if a != b:
      out.append(f'{k}: {a!r} -> {b!r}')
  return out


def recorded_config(results: dict[str, Any]) -> dict[str, Any] | None:
  if 'config' in results:
    return results['config']
  return results.get('train', {}).get('config')  # b2n.json keeps the base-class run's results


def finished(job: Job, config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """The job's results when it has finished, else None. A finished run recorded with another
  config is an error: skipping it would put a stale number in the table."""
  results = _read_json(os.path.join(job.workdir, result_file(config)))
  if results is None:
    return None
  recorded = recorded_config(results)
  if recorded is not None:
    if config.get('program', 'train') == 'b2n':
      config = ml_collections.ConfigDict(config.to_dict())
      config.data.subset = 'base'
      config.train.export = True
    diff = config_differences(recorded, config)
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


# ----------------------------------------------------------------------------- running


class Runner:
  """Runs jobs one after another in this process; prints progress and an ETA."""

  def __init__(self, total: int, dry_run: bool = False):
    self.total = total
    self.done = 0
    self.seconds: list[float] = []
    self.failures: list[dict[str, str]] = []
    self.status: dict[str, str] = {}
    self.dry_run = dry_run
    self.commands: list[str] = []

  def _eta(self, left: int) -> str:
    if not self.seconds:
      return 'ETA after the first run'
    s = int(sum(self.seconds) / len(self.seconds) * left)
    return f'ETA {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d} for {left} runs'

  def run(self, job: Job) -> dict[str, Any] | None:
    """Runs `job` unless finished; returns its results (None: failed or dry run)."""
    self.done += 1
    config = job_config(job)
    if job.phase == 'trial':
      check_no_test(job, config)
    have = finished(job, config)
    if have is not None:
      self.status[job.workdir] = 'finished earlier'
      if not self.dry_run:
        _say(f'run {self.done} of {self.total}: {job.name}: finished earlier, skipped')
      return have
    if self.dry_run:
      self.status[job.workdir] = 'to run'
      self.commands.append(job.command())
      return None
    left = self.total - self.done
    _say(f'run {self.done} of {self.total}: {job.name} ({job.phase}); {self._eta(left + 1)}')
    _say(f'  {job.command()}')
    t0 = time.time()
    try:
      from prompt_jax import main  # the same programs main runs
      results = main.PROGRAMS[config.get('program', 'train')](config, job.workdir)
    except Exception as e:  # a failing run is recorded, the sweep goes on
      line = (f'{type(e).__name__}: {str(e).strip().splitlines()[0]}' if str(e).strip()
              else type(e).__name__)
      self.failures.append({'job': job.name, 'workdir': job.workdir, 'error': line})
      self.status[job.workdir] = f'failed: {line}'
      if _primary():
        os.makedirs(job.workdir, exist_ok=True)
        with open(os.path.join(job.workdir, FAILED), 'w') as f:
          json.dump({'error': line, 'traceback': traceback.format_exc(),
                     'command': job.command()}, f, indent=1)
      _say(f'  FAILED ({time.time() - t0:.0f} s): {line}')
      return None
    self.seconds.append(time.time() - t0)
    stale = os.path.join(job.workdir, FAILED)
    if os.path.exists(stale) and _primary():
      os.remove(stale)
    self.status[job.workdir] = 'ran'
    _say(f'  done in {self.seconds[-1]:.0f} s')
    return results


def _primary() -> bool:
  """False on processes > 0 of a multi-host sweep (jobs with mesh.distributed): process 0 writes
  the sweep's own files, as it writes each run's results.json."""
  if 'jax' not in sys.modules:
    return True
  import jax
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def _say(msg: str) -> None:
  print(f'[sweep] {msg}', flush=True)


def _show_trainer_log(verbose: bool = False) -> None:
  """INFO log lines of prompt_jax itself (evals, resume, preparation) and every warning; other
  libraries' INFO lines (clu's metric lines, orbax's per-save chatter) only with --verbose, as
  `prompt-jax` (console.py)."""
  import logging as py_logging
  from absl import logging
  from prompt_jax import console
  logging.set_verbosity(logging.INFO)
  console.setup(verbose)
  if not verbose:
    py_logging.getLogger('absl').addFilter(console._OwnInfoOnly())


@contextlib.contextmanager
def _compilation_cache(path: str):
  """Trials of a task (and its final runs) share compiled programs through JAX's persistent
  compilation cache in `path` ('' = off); the previous settings come back afterwards."""
  if not path:
    yield
    return
  import jax
  keys = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  saved = {k: getattr(jax.config, k) for k in keys}
  jax.config.update(keys[0], path)
  jax.config.update(keys[1], 0.0)
  try:
    yield
  finally:
    for k, v in saved.items():
      jax.config.update(k, v)


def run_sweep(plan: Plan, *, dry_run: bool = False, compilation_cache: str = ''
              ) -> dict[str, Any]:
  """Runs (or, dry_run, lists) every job of `plan`; writes the table and DIR/sweep.json."""
  with _compilation_cache('' if dry_run else compilation_cache):
    return _run_sweep(plan, dry_run)


def _run_sweep(plan: Plan, dry_run: bool) -> dict[str, Any]:
  per_task = len(plan.seeds) + (len(plan.search.trials()) if plan.search else 0)
  runner = Runner(len(plan.tasks) * per_task, dry_run)
  # Check every job's config (and finished runs' recorded configs) before running anything.
  first = {t: (plan.trials(t) if plan.search else plan.runs(t)) for t in plan.tasks}
  for jobs in first.values():
    for job in jobs:
      cfg = job_config(job)
      if job.phase == 'trial':
        check_no_test(job, cfg)
      finished(job, cfg)
  finals: dict[str, list[Job]] = {}
  selections: dict[str, dict[str, Any]] = {}
  pending: list[str] = []
  for task in plan.tasks:
    results = {j.workdir: r for j in first[task] if (r := runner.run(j)) is not None}
    if not plan.search:
      finals[task] = first[task]
      continue
    saved = _read_json(os.path.join(plan.workdir, task, SELECTION))
    if saved is None and dry_run and len(results) < len(first[task]):
      pending.append(f'{task}: final runs wait for its search ({len(results)} of '
                     f'{len(first[task])} trials finished); run --dry_run again after them (a '
                     'trial that cannot finish, e.g. diverged: run the sweep without --dry_run, '
                     'it selects among the trials that finished)')
      runner.done += len(plan.seeds)
      continue
    try:
      sel = saved or select(task, first[task], results, plan.search, plan.splits(task)[1])
    except SweepError as e:
      runner.failures.append({'job': f'{task}/selection', 'workdir': '', 'error': str(e)})
      runner.done += len(plan.seeds)
      continue
    if saved is None and not dry_run and _primary():
      with open(os.path.join(plan.workdir, task, SELECTION), 'w') as f:
        json.dump(sel, f, indent=1)
    selections[task] = sel
    finals[task] = plan.finals(task, sel['chosen'])
    for job in finals[task]:
      runner.run(job)

  summary: dict[str, Any] = {
      'config': plan.config, 'tasks': list(plan.tasks), 'seeds': list(plan.seeds),
      'search': plan.search_name, 'overrides': [f'{k}={v}' for k, v in plan.overrides],
      'jobs': [{'job': j.name, 'phase': j.phase, 'workdir': j.workdir, 'command': j.command(),
                'status': runner.status.get(j.workdir, 'not reached')}
               for j in dict.fromkeys(j for t in plan.tasks
                                      for j in first[t] + finals.get(t, []))],
      'selections': selections, 'failures': runner.failures, 'pending': pending,
  }
  if dry_run:
    for c in runner.commands:
      print(c)
    for p in pending:
      print(f'# {p}', file=sys.stderr)
    n_done = sum(s == 'finished earlier' for s in runner.status.values())
    print(f'# {len(runner.commands)} jobs to run, {n_done} finished', file=sys.stderr)
    summary['commands'] = runner.commands
    return summary
  final_dirs = [j.workdir for jobs in finals.values() for j in jobs]
  summary['table'] = write_table(plan, final_dirs, summary)
  _say(f'{sum(s == "ran" for s in runner.status.values())} runs ran, '
       f'{sum(s == "finished earlier" for s in runner.status.values())} had finished earlier, '
       f'{len(runner.failures)} failed')
  for f in runner.failures:
    _say(f'  FAILED {f["job"]}: {f["error"]}')
  return summary


def selection_labels(plan: Plan) -> dict[str, str]:
  if plan.search:
    train, val, final = plan.search.train_split, plan.search.val_split, plan.search.final_split
    return {'final': f'val-selected hyperparameters ({plan.search_name} grid, {train} -> {val}; '
                     f'final epoch on {final} -> test)'}
  return {'final': 'recipe hyperparameters, final epoch',
          'val_selected': 'recipe hyperparameters, val-selected epoch',
          'test_selected': 'recipe hyperparameters, test-selected epoch (as released)'}


def _b2n_runs(dirs: Sequence[str]) -> list[report.Run]:
  """b2n.json (base / novel / harmonic mean, and the zero-shot CLIP baseline) as report runs."""
  runs = []
  for d in dirs:
    r = _read_json(os.path.join(d, RESULT_FILES['b2n']))
    if r is None:
      continue
    train = r.get('train', {})
    config = report.flat_config(train.get('config', {}))
    common = dict(task=r.get('task', ''), seed=train.get('seed'), config=config)
    runs.append(report.Run(path=d, method=r.get('method', 'sap'),
                           variant=train.get('variant', 'sap'),
                           results={'final': {k: r[k] for k in ('base', 'novel', 'hm')}}, **common))
    if 'zeroshot' in r:
      runs.append(report.Run(path=d + '#zeroshot', method='clip', variant='clip_zeroshot',
                             results={'final': r['zeroshot']}, **common))
  return runs


def write_table(plan: Plan, dirs: Sequence[str], summary: dict[str, Any]) -> str:
  """DIR/report.{md,csv,png} and DIR/sweep.json from the finished runs in `dirs` (written by
  process 0 of a multi-host sweep)."""
  out = plan.workdir if _primary() else tempfile.mkdtemp()
  b2n = _b2n_runs(dirs)
  if b2n:
    rows = []
    for split, label in (('base', 'base classes'), ('novel', 'novel classes'),
                         ('hm', 'harmonic mean')):
      rows += report.build_rows(b2n, ('final',), split, {'final': label})
    runs = b2n
  else:
    files = [os.path.join(d, RESULT_FILES['train']) for d in dirs]
    runs = [report.load_run(f) for f in files if os.path.exists(f)]
    # Epoch selection (val- or test-selected) only where the runs evaluated a val split.
    with_val = any(r.results.get('splits', {}).get('val') for r in runs)
    metrics = ('final', 'val_selected', 'test_selected') if with_val else ('final',)
    rows = report.build_rows(runs, metrics, 'test', selection_labels(plan))
  if not rows:
    _say('no finished run to tabulate')
    with open(os.path.join(out, 'sweep.json'), 'w') as f:
      json.dump(summary, f, indent=1)
    return ''
  text = report.write(rows, runs, md=os.path.join(out, 'report.md'),
                      csv_path=os.path.join(out, 'report.csv'),
                      png=os.path.join(out, 'report.png'),
                      json_path=os.path.join(out, 'sweep.json'), extra=summary)
  print(text, end='', flush=True)
  _say(f'table: {out}/report.md (.csv, .png); everything: {out}/sweep.json')
  return text


# ----------------------------------------------------------------------------- CLI


def _seeds(text: str) -> tuple[int, ...]:
  if text in protocol.RELEASE_SEEDS:
    return protocol.RELEASE_SEEDS[text]
  try:
    return tuple(int(s) for s in text.split(',') if s.strip())
  except ValueError:
    raise SweepError(f'--seeds={text}: a comma list of integers or one of '
                     f'{sorted(protocol.RELEASE_SEEDS)}') from None


def _floats(text: str) -> tuple[float, ...]:
  return tuple(float(s) for s in text.split(',') if s.strip())


def parse_args(argv: Sequence[str]) -> tuple[Plan, argparse.Namespace]:
  p = argparse.ArgumentParser(prog='python -m prompt_jax.sweep', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--config', required=True,
                 help='config file [:args without task], e.g. configs/vpt_vtab.py:deep=False')
  p.add_argument('--tasks', required=True,
                 help='vtab | natural | specialized | structured | fgvc | b2n | comma list')
  p.add_argument('--seeds', default='',
                 help="comma list (default: the config's seed) or a release's seeds: "
                      f"{', '.join(protocol.RELEASE_SEEDS)}")
  p.add_argument('--workdir', required=True, help='root folder: one run folder per job below')
  p.add_argument('--search', default='none', choices=['none', *protocol.SEARCHES])
  p.add_argument('--lrs', default='', help="replace the search grid's train.lr values")
  p.add_argument('--wds', default='', help="replace the search grid's train.wd values")
  p.add_argument('--shard', default='0/1', help='I/N: run the tasks I, I+N, ... only')
  p.add_argument('--dry_run', action='store_true', help='print the pending jobs as commands')
  p.add_argument('--verbose', action='store_true',
                 help="every library's INFO log (clu metric lines, orbax), as prompt-jax --verbose")
  p.add_argument('--jobs_file', default='',
                 help='with --dry_run: also write the pending jobs to this file, one line each, '
                      'absolute paths, weights checked (prompt_jax/jobs.py; for a SLURM array)')
  p.add_argument('--compilation_cache', default='{workdir}/jax_cache',
                 help="JAX persistent compilation cache ('' = off)")
  args, rest = p.parse_known_args(list(argv))
  if args.jobs_file and not args.dry_run:
    p.error('--jobs_file writes the pending jobs of a --dry_run; add --dry_run')
  overrides = []
  for a in rest:
    key, eq, value = a[len('--config.'):].partition('=')
    if not a.startswith('--config.') or not eq:
      p.error(f'unrecognised argument {a!r} (config overrides are --config.KEY=VALUE)')
    overrides.append((key, value))
  tasks = protocol.expand_tasks(args.tasks)
  i, _, n = args.shard.partition('/')
  if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
    p.error(f'--shard={args.shard}: expected I/N with 0 <= I < N')
  tasks = tasks[int(i)::int(n)]
  search = None
  if args.search != 'none':
    search = protocol.SEARCHES[args.search]
    grid = dict(search.grid)
    if args.lrs:
      grid['train.lr'] = _floats(args.lrs)
    if args.wds:
      grid['train.wd'] = _floats(args.wds)
    search = dataclasses.replace(search, grid=grid)
    fixed = set(grid) | {'seed', 'data.train_split', 'data.eval_splits', 'data.val_split'}
  elif args.lrs or args.wds:
    p.error('--lrs / --wds replace the values of a --search grid')
  else:
    fixed = {'seed'}
  clash = sorted(fixed & {k for k, _ in overrides})
  if clash:
    p.error(f'--config.{clash[0]} is set by the sweep ({"search grid, " if search else ""}'
            '--seeds, protocol splits); remove it')
  plan = Plan(config=args.config, tasks=tasks, seeds=(), workdir=os.path.abspath(args.workdir),
              search=search, search_name=args.search, overrides=tuple(overrides))
  seeds = _seeds(args.seeds) if args.seeds else (int(plan.base_config(tasks[0]).seed),)
  if not seeds:
    p.error('--seeds is empty')
  plan.seeds = tuple(dict.fromkeys(seeds))
  args.compilation_cache = args.compilation_cache.replace('{workdir}', plan.workdir)
  return plan, args


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    plan, args = parse_args(argv)
    os.makedirs(plan.workdir, exist_ok=True)
    if not args.dry_run:
      _show_trainer_log(args.verbose)
    summary = run_sweep(plan, dry_run=args.dry_run, compilation_cache=args.compilation_cache)
    if args.jobs_file:
      from prompt_jax import jobs
      n = jobs.write(args.jobs_file, summary.get('commands', []))
      print(f'# {n} jobs written to {os.path.abspath(args.jobs_file)}', file=sys.stderr)
  except (SweepError, ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 1 if summary['failures'] else 0


if __name__ == '__main__':
  sys.exit(main())
