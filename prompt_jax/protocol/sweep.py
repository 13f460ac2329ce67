r"""The whole protocol in one command: every task, per-task recipes, search, seeds, one table.

  python -m prompt_jax.protocol.sweep --config=configs/vpt_vtab.py --tasks=vtab --search=vpt \
      --seeds=42,44,82,100,800 --workdir=DIR --config.init.checkpoint=ViT-B_16.npz
  prompt-jax-sweep --config=configs/ship_vtab.py --tasks=natural,eurosat --seeds=0,1,2 \
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
        written to DIR/<task>/selection.json, which later reruns of the same grid reuse (delete it
        to select again), and retrained on train800val200 with every seed, scored on test.
        `--lrs` / `--wds` replace the grid's values; a rerun with another grid selects again among
        its own trials (finished trials outside it are neither selected from nor listed, and
        final runs trained with another choice are an error naming the difference).

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
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any

from prompt_jax.protocol import searches as protocol
from prompt_jax.protocol import report
from prompt_jax.train import workdir as workdir_lib
# The plan (pure: jobs, configs, finished runs, selection), re-exported for callers of sweep.
from prompt_jax.protocol.plan import (  # noqa: F401
    FAILED, SELECTION, TASK_KEYS, SweepError, Job, value_text, task_spec, parse_config,
    job_config, program, result_file, _read_json, config_differences, finished, Plan, check_job,
    check_no_test, select, selection_labels, _say)
from prompt_jax.util import console
from prompt_jax.util import cpu_malloc
from prompt_jax.protocol import jobs as jobs_file


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
    check_job(job, config)
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
      results = program(config)(config, job.workdir)  # the same programs main runs
    except Exception as e:  # a failing run is recorded, the sweep goes on
      line = (f'{type(e).__name__}: {str(e).strip().splitlines()[0]}' if str(e).strip()
              else type(e).__name__)
      self.failures.append({'job': job.name, 'workdir': job.workdir, 'error': line})
      self.status[job.workdir] = f'failed: {line}'
      if _primary():
        workdir_lib.write_json(os.path.join(job.workdir, FAILED),
                               {'error': line, 'traceback': traceback.format_exc(),
                                'command': job.command()})
      _say(f'  FAILED ({time.time() - t0:.0f} s): {line}')
      return None
    self.seconds.append(time.time() - t0)
    stale = os.path.join(job.workdir, FAILED)
    if os.path.exists(stale) and _primary():
      os.remove(stale)
    self.status[job.workdir] = 'ran'
    _say(f'  done in {self.seconds[-1]:.0f} s')
    return results


def same_grid(selection: dict[str, Any], trials: Sequence[Job]) -> bool:
  """Whether a saved selection was made from exactly these trials (those it scored and those it
  listed as missing): a rerun with another grid (--lrs / --wds) selects again, never reusing a
  choice among trials it no longer asks for."""
  made_from = set(selection.get('trials', {})) | set(selection.get('trials_missing', ()))
  return made_from == {j.trial for j in trials}


def _primary() -> bool:
  """False on processes > 0 of a multi-host sweep (jobs with mesh.distributed): process 0 writes
  the sweep's own files, as it writes each run's results.json."""
  if 'jax' not in sys.modules:
    return True
  import jax
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def _show_trainer_log(verbose: bool = False) -> None:
  """INFO log lines of prompt_jax itself (evals, resume, preparation) and every warning; other
  libraries' INFO lines (clu's metric lines, orbax's per-save chatter) only with --verbose, as
  `prompt-jax` (console.py)."""
  import logging as py_logging
  from absl import logging
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
      check_job(job, cfg)
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
    if saved is not None and not same_grid(saved, first[task]):
      _say(f'{task}: {SELECTION} was made from another grid; selecting again among this one')
      saved = None
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
      workdir_lib.write_json(os.path.join(plan.workdir, task, SELECTION), sel)
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


def write_table(plan: Plan, dirs: Sequence[str], summary: dict[str, Any]) -> str:
  """DIR/report.{md,csv,png} and DIR/sweep.json from the finished runs in `dirs` (written by
  process 0 of a multi-host sweep)."""
  out = plan.workdir if _primary() else tempfile.mkdtemp()
  prog = program(plan.base_config(plan.tasks[0]))
  if prog.runs is not None:  # the program's own rows (b2n: base / novel / harmonic mean)
    runs = [r for d in dirs if (res := _read_json(os.path.join(d, prog.result_file))) is not None
            for r in prog.runs(d, res)]
    rows = [row for split, label in prog.table
            for row in report.build_rows(runs, ('final',), split, {'final': label})]
  else:
    files = [os.path.join(d, prog.result_file) for d in dirs]
    runs = [report.load_run(f) for f in files if os.path.exists(f)]
    # Epoch selection (val- or test-selected) only where the runs evaluated a val split.
    with_val = any(r.results.get('splits', {}).get('val') for r in runs)
    metrics = ('final', 'val_selected', 'test_selected') if with_val else ('final',)
    rows = report.build_rows(runs, metrics, 'test', selection_labels(plan))
  if not rows:
    _say('no finished run to tabulate')
    workdir_lib.write_json(os.path.join(out, 'sweep.json'), summary)
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
  p = argparse.ArgumentParser(prog='python -m prompt_jax.protocol.sweep', description=__doc__,
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
                      'absolute paths, weights checked (protocol/jobs.py; for a SLURM array)')
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
  axis = sorted(set(TASK_KEYS) & {k for k, _ in overrides})
  if axis:
    p.error(f'--config.{axis[0]} is the task axis of the sweep: every job would train the same '
            'task, merged into one column. Choose tasks with --tasks; remove the override.')
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
      cpu_malloc.maybe_apply()  # before JAX's backend exists (prompt_jax/util/cpu_malloc.py)
    summary = run_sweep(plan, dry_run=args.dry_run, compilation_cache=args.compilation_cache)
    if args.jobs_file:
      n = jobs_file.write(args.jobs_file, summary.get('commands', []))
      print(f'# {n} jobs written to {os.path.abspath(args.jobs_file)}', file=sys.stderr)
  except (SweepError, ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 1 if summary['failures'] else 0


if __name__ == '__main__':
  sys.exit(main())
