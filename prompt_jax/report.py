"""Collects per-run results into a VTAB table with group means.

  python -m prompt_jax.report --workdirs=runs/vpt_cifar100,runs/vpt_dtd --out=table.md [--png=b.png]

Each workdir holds `results.json`, written once per finished run:
  {"task": "cifar100", "method": "vpt", "val200": 0.71, "test": 0.70, ...}
Accuracies are top-1 fractions in [0, 1]; extra keys are ignored. Several runs of the same
(method, task) (e.g. seeds) are averaged. The table has one row per method: per-task top-1 (%),
the Natural / Specialized / Structured group means and their average (`tasks_lib.group_means`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

from prompt_jax.data import tasks as tasks_lib

GROUP_COLUMNS = ('natural', 'specialized', 'structured', 'mean')


def load_results(workdirs: list[str], metric: str = 'test') -> dict[str, dict[str, float]]:
  """-> {method: {task: mean `metric` over runs}}."""
  runs = collections.defaultdict(lambda: collections.defaultdict(list))
  for d in workdirs:
    path = d if d.endswith('.json') else os.path.join(d, 'results.json')
    with open(path) as f:
      r = json.load(f)
    if metric not in r:
      raise KeyError(f'{path} has no {metric!r}; keys: {sorted(r)}')
    runs[r.get('method', 'unknown')][tasks_lib.ALIASES.get(r['task'], r['task'])].append(
        float(r[metric]))
  return {m: {t: float(np.mean(v)) for t, v in ts.items()} for m, ts in runs.items()}


def table_rows(results: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
  """-> (header, rows) with percentages to 2 decimals; '' where a task/group is missing."""
  tasks = [t for g in tasks_lib.GROUPS.values() for t in g
           if any(t in r for r in results.values())]
  header = ['method'] + tasks + list(GROUP_COLUMNS)
  rows = []
  for method, acc in sorted(results.items()):
    g = tasks_lib.group_means(acc)
    cells = [acc.get(t) for t in tasks] + [g.get(c) for c in GROUP_COLUMNS]
    rows.append([method] + ['' if v is None else f'{100 * v:.2f}' for v in cells])
  return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def csv(header: list[str], rows: list[list[str]]) -> str:
  return '\n'.join(','.join(r) for r in [header] + rows) + '\n'


def bar_chart(results: dict[str, dict[str, float]], path: str) -> None:
  """Group means per method as grouped bars (PNG)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  methods = sorted(results)
  means = [tasks_lib.group_means(results[m]) for m in methods]
  fig, ax = plt.subplots(figsize=(7, 3.5))
  width = 0.8 / max(len(methods), 1)
  x = np.arange(len(GROUP_COLUMNS))
  for i, (m, g) in enumerate(zip(methods, means)):
    ax.bar(x + i * width, [100 * g.get(c, np.nan) for c in GROUP_COLUMNS], width, label=m)
  ax.set_xticks(x + width * (len(methods) - 1) / 2, GROUP_COLUMNS)
  ax.set_ylabel('top-1 (%)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--workdirs', required=True, help='comma list of run dirs (or results.json)')
  p.add_argument('--metric', default='test')
  p.add_argument('--out', default=None, help='write the table here (.csv -> CSV, else markdown)')
  p.add_argument('--png', default=None, help='optional bar chart of the group means')
  args = p.parse_args(argv)
  results = load_results([d for d in args.workdirs.split(',') if d], args.metric)
  header, rows = table_rows(results)
  text = csv(header, rows) if (args.out or '').endswith('.csv') else markdown(header, rows)
  print(text, end='')
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  if args.png:
    bar_chart(results, args.png)
  return 0


if __name__ == '__main__':
  sys.exit(main())
