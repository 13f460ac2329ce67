"""Tables from finished runs: per-task top-1 (mean ± std over seeds), VTAB group means, and the
non-VTAB tasks (FGVC, digits, ...) in their own columns.

  python -m prompt_jax.protocol.report --workdirs=runs/ --out=table.md [--csv=t.csv] [--png=b.png]
      [--json=all.json] [--metric=final|val_selected|test_selected] [--split=test]

`--workdirs` is a comma list of run folders, results.json files or ANY parent folder: every
results.json below it is read (a sweep's root, the demo's workdir). Each run's results.json
(written by train/trainer.py) records its method, `variant` (e.g. vpt_deep / vpt_shallow /
spt_deep_kmeans), seed, splits and full config. Rows are (method, variant, config): the config
label is the backbone checkpoint's file name, plus every config field that differs between runs
which would otherwise be averaged together (same task and seed), e.g. `vpt.num_prompts=100`.
Several seeds of one row and task give mean ± std (population std over seeds).

Metrics (`--metric`), each labelled in the table's `selection` column:
  final          accuracy on `--split` after the last epoch;
  val_selected   on `--split` at the epoch with the best accuracy on the run's val split;
  test_selected  the best epoch on `--split` itself: selection on test, as several papers report.
Group means (tasks.group_means): Natural / Specialized / Structured over the tasks present, and
`mean` = the average of the three when all 19 tasks are present; `fgvc` = the mean of the 5 FGVC
sets when all are present. No TensorFlow import; matplotlib only for --png.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any


from prompt_jax.train import workdir
from prompt_jax.data import tasks as tasks_lib
from prompt_jax.protocol import figure as report_figure
from prompt_jax.protocol.rows import (Cell, Row, cell_of,
                                      group_cells, group_columns, task_columns)

RESULTS = 'results.json'
METRICS = {
    'final': 'final epoch',
    'val_selected': 'val-selected epoch',
    'test_selected': 'test-selected epoch (as released)',
}
# Folders a run writes that never hold another run's results.
_SKIP_DIRS = ('checkpoints', 'tuned', 'plugins')
# Fields that differ between runs of one row without making them different experiments.
_PER_RUN_KEYS = ('seed', 'data.task', 'recipe_task', 'init.checkpoint', 'data.data_dir',
                 'data.image_root', 'data.split_file', 'data.tfds_version', 'mesh.distributed',
                 'mesh.fsdp', 'train.eval_batch_size', 'train.checkpoint_every_steps',
                 'train.keep_checkpoints', 'train.log_every_steps', 'train.export')


class NoResultsError(FileNotFoundError):
  """No results.json under the given paths."""


@dataclasses.dataclass
class Run:
  """One finished run."""

  path: str                    # its results.json
  method: str
  variant: str
  task: str                    # canonical VTAB name, or the task as recorded
  seed: int | None
  results: dict[str, Any]
  config: dict[str, Any]       # flat {dotted key: value} ({} for results without a config)


# ----------------------------------------------------------------------------- finding runs


def find_results(paths: Iterable[str]) -> list[str]:
  """results.json files: each path is a results.json, or a folder searched recursively (sorted,
  without checkpoints/ and tuned/). Raises NoResultsError naming the paths when none is found."""
  found, missing = [], []
  for p in paths:
    if p.endswith('.json') and os.path.isfile(p):
      found.append(p)
      continue
    if not os.path.isdir(p):
      missing.append(p)
      continue
    for root, dirs, files in os.walk(p):
      dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
      if RESULTS in files:
        found.append(os.path.join(root, RESULTS))
  unique = list(dict.fromkeys(os.path.realpath(f) for f in found))
  if not unique:
    where = ', '.join(paths) or '(no paths)'
    detail = f' ({", ".join(missing)}: no such file or folder)' if missing else ''
    raise NoResultsError(
        f'no {RESULTS} under {where}{detail}. A training run writes {RESULTS} into its --workdir '
        'when it finishes (python -m prompt_jax.main --config=... --workdir=DIR); a sweep writes '
        'one per run below its --workdir. Pass those folders or any parent folder.')
  return unique


def flat_config(d: dict[str, Any]) -> dict[str, Any]:
  """A results.json config {'train': {'lr': .1}} -> {'train.lr': .1}; lists become tuples."""
  return workdir.flatten(d)


def load_run(path: str) -> Run:
  with open(path) as f:
    r = json.load(f)
  task = str(r.get('task', ''))
  if tasks_lib.is_vtab_task(task):
    task = tasks_lib.canonical_task(task)
  method = str(r.get('method', 'unknown'))
  return Run(path=path, method=method, variant=str(r.get('variant', method)), task=task,
             seed=r.get('seed'), results=r, config=flat_config(r.get('config', {})))


def load_runs(paths: Iterable[str]) -> list[Run]:
  """Every run under `paths` (see find_results)."""
  return [load_run(p) for p in find_results(paths)]


def metric_value(run: Run, metric: str = 'final', split: str = 'test') -> float | None:
  """The run's top-1 on `split` under `metric` (see the module docstring); None when the run did
  not evaluate it (e.g. a search trial scored on val200 only)."""
  r = run.results
  if metric == 'final':
    v = r.get('final', {}).get(split, r.get(split))
  elif metric == 'val_selected':
    v = r.get('val_selected', {}).get(split)
  elif metric == 'test_selected':
    v = r.get(f'best_epoch_selected_on_{split}', {}).get(split)
  else:
    raise ValueError(f'unknown metric {metric!r}; known: {sorted(METRICS)}')
  return None if v is None else float(v)


# ----------------------------------------------------------------------------- rows


def backbone_label(config: dict[str, Any]) -> str:
  ckpt = str(config.get('init.checkpoint', '') or '')
  if ckpt in ('', 'random'):
    return f"random {config.get('model.variant', '')}".strip() if config else 'unknown config'
  return os.path.basename(ckpt.rstrip('/'))


def _config_labels(runs: list[Run]) -> dict[str, str]:
  """path -> config label: the backbone, plus the fields that tell apart runs of one
  (method, variant, backbone) which share a task and seed."""
  labels = {}
  groups = collections.defaultdict(list)
  for r in runs:
    groups[(r.method, r.variant, backbone_label(r.config))].append(r)
  for (_, _, backbone), members in groups.items():
    by_slot = collections.defaultdict(list)
    for r in members:
      by_slot[(r.task, r.seed)].append(r)
    keys = set()
    for clash in by_slot.values():
      if len(clash) > 1:
        flat = [r.config for r in clash]
        for k in set().union(*flat):
          if k not in _PER_RUN_KEYS and len({repr(c.get(k)) for c in flat}) > 1:
            keys.add(k)
    for r in members:
      extra = [f'{k}={r.config.get(k)}' for k in sorted(keys)]
      labels[r.path] = '; '.join([backbone] + extra)
  return labels


def build_rows(runs: Sequence[Run], metrics: Sequence[str] = ('final',), split: str = 'test',
               selection_labels: dict[str, str] | None = None) -> list[Row]:
  """Rows (method, variant, config, selection) with per-task and group cells. Runs without a
  value for a metric (no such split) are left out of that metric's rows."""
  labels = _config_labels(list(runs))
  rows = []
  for metric in metrics:
    values = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in runs:
      v = metric_value(r, metric, split)
      if v is not None:
        values[(r.method, r.variant, labels[r.path])][r.task][r.seed] = v
    for (method, variant, config), by_task in sorted(values.items()):
      cells = {t: cell_of(v) for t, v in by_task.items()}
      cells.update(group_cells(by_task))
      selection = (selection_labels or {}).get(metric, METRICS[metric])
      rows.append(Row(method, variant, config, selection, cells))
  return rows


# ----------------------------------------------------------------------------- output


def _fmt(cell: Cell | None) -> str:
  if cell is None:
    return ''
  if cell.n > 1:
    return f'{100 * cell.mean:.2f} ± {100 * cell.std:.2f}'
  return f'{100 * cell.mean:.2f}'


def table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
  """(header, rows of strings): top-1 in %, 'mean ± std' over seeds; '' where missing. A group
  mean over part of its group says so ('71.20 (4/7)'). Config fields and long selection texts are
  footnote marks ('ViT-B_16.npz [1]'), listed by `footnotes`."""
  cols = task_columns(rows) + group_columns(rows)
  header = ['method', 'variant', 'config', 'selection'] + cols
  marks = _footnote_marks(rows)
  body = [[r.method, r.variant, _marked(r.config, marks), _short_selection(r.selection, marks)]
          + [_fmt(r.cells.get(c)) + _partial(r, c) for c in cols] for r in rows]
  return header, body


def footnotes(rows: Sequence[Row]) -> list[str]:
  """'[n] text' for each config difference / selection text the table marks."""
  return [f'[{n}] {text}' for text, n in _footnote_marks(rows).items()]


def _footnote_marks(rows: Sequence[Row]) -> dict[str, int]:
  texts = [x for r in rows for x in (_config_extra(r.config), r.selection)
           if x and (x != r.selection or len(x) > _SELECTION_WIDTH)]
  return {t: i + 1 for i, t in enumerate(dict.fromkeys(texts))}


_SELECTION_WIDTH = 28


def _config_extra(config: str) -> str:
  return '; '.join(config.split('; ')[1:])


def _marked(config: str, marks: dict[str, int]) -> str:
  extra = _config_extra(config)
  return f"{config.split('; ')[0]} [{marks[extra]}]" if extra else config


def _short_selection(selection: str, marks: dict[str, int]) -> str:
  if len(selection) <= _SELECTION_WIDTH:
    return selection
  head = selection.split(':')[0].split(' (')[0][:_SELECTION_WIDTH].rstrip()
  return f'{head} [{marks[selection]}]'


def _partial(r: Row, column: str) -> str:
  members = tasks_lib.GROUPS.get(column)
  if not members or column not in r.cells:
    return ''
  have = sum(t in r.cells for t in members)
  return '' if have == len(members) else f' ({have}/{len(members)})'


def markdown(header: list[str], rows: list[list[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def csv(rows: Sequence[Row]) -> str:
  """Long form: one line per (row, column) with mean, std (percent) and the number of seeds."""
  import csv as csv_lib
  import io
  out = io.StringIO()
  w = csv_lib.writer(out, lineterminator='\n')
  w.writerow(['method', 'variant', 'config', 'selection', 'column', 'mean', 'std', 'n'])
  cols = task_columns(rows) + group_columns(rows)
  for r in rows:
    for c in cols:
      if c in r.cells:
        cell = r.cells[c]
        w.writerow([r.method, r.variant, r.config, r.selection, c, f'{100 * cell.mean:.4f}',
                    f'{100 * cell.std:.4f}', cell.n])
  return out.getvalue()


def to_json(rows: Sequence[Row], runs: Sequence[Run] = ()) -> dict[str, Any]:
  return {'rows': [dataclasses.asdict(r) for r in rows],
          'runs': [{'path': r.path, 'method': r.method, 'variant': r.variant, 'task': r.task,
                    'seed': r.seed} for r in runs]}


def write(rows: Sequence[Row], runs: Sequence[Run], *, md: str | None = None,
          csv_path: str | None = None, png: str | None = None, json_path: str | None = None,
          extra: dict[str, Any] | None = None) -> str:
  """Writes the outputs asked for; returns the markdown table."""
  text = markdown(*table(rows))
  notes = footnotes(rows)
  if notes:
    text += '\n' + '\n'.join(notes) + '\n'
  if md:
    with open(md, 'w') as f:
      f.write(text)
  if csv_path:
    with open(csv_path, 'w') as f:
      f.write(csv(rows))
  if png:
    if not report_figure.bar_chart(rows, png):
      print(f'no chart written to {png}: no value to plot', file=sys.stderr)
  if json_path:
    workdir.write_json(json_path, {**to_json(rows, runs), **(extra or {})})
  return text


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdirs', required=True,
                 help='comma list of run folders, results.json files or parent folders')
  p.add_argument('--metric', default='final', choices=sorted(METRICS))
  p.add_argument('--split', default='test', help='which evaluated split (default test)')
  p.add_argument('--out', default=None, help='write the table here (.csv: long-form CSV)')
  p.add_argument('--csv', default=None, help='long-form CSV (mean, std, n per cell)')
  p.add_argument('--png', default=None, help='bar chart of the group means (or of the tasks)')
  p.add_argument('--json', default=None, help='rows and the runs they come from')
  args = p.parse_args(argv)
  try:
    runs = load_runs([d for d in args.workdirs.split(',') if d])
  except NoResultsError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  rows = build_rows(runs, (args.metric,), args.split)
  if not rows:
    print(f'error: none of the {len(runs)} runs has a {args.metric} accuracy on '
          f'{args.split!r} (e.g. search trials scored on val only); try --split or --metric',
          file=sys.stderr)
    return 1
  md, csv_path = args.out, args.csv
  if md and md.endswith('.csv'):
    md, csv_path = None, csv_path or md
  text = write(rows, runs, md=md, csv_path=csv_path, png=args.png, json_path=args.json)
  print(text, end='')
  left_out = [r.path for r in runs if metric_value(r, args.metric, args.split) is None]
  if left_out:
    print(f'({len(left_out)} runs without {args.metric} {args.split} accuracy left out, e.g. '
          f'{left_out[0]})', file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
