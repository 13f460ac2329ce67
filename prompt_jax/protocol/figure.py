"""The report's figure: per-task top-1 grouped by Natural / Specialized / Structured (then FGVC and
other tasks), one colour per row, mean ± std over seeds, and a panel of group means
(`prompt_jax.protocol.report` builds the rows, `rows` defines them; matplotlib is imported only
here, on use)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prompt_jax.data import tasks as tasks_lib
from prompt_jax.protocol.rows import Cell, Row, group_columns, task_columns

# short x labels of the figure
_SHORT = {'caltech101': 'Caltech101', 'cifar100': 'CIFAR-100', 'dtd': 'DTD',
          'oxford_flowers102': 'Flowers102', 'oxford_iiit_pet': 'Pets', 'svhn': 'SVHN',
          'sun397': 'SUN397', 'patch_camelyon': 'Camelyon', 'eurosat': 'EuroSAT',
          'resisc45': 'Resisc45', 'diabetic_retinopathy': 'Retinopathy',
          'clevr_count': 'Clevr-Count', 'clevr_dist': 'Clevr-Dist', 'dmlab': 'DMLab',
          'kitti': 'KITTI-Dist', 'dsprites_loc': 'dSpr-Loc', 'dsprites_ori': 'dSpr-Ori',
          'smallnorb_azi': 'sNORB-Azim', 'smallnorb_ele': 'sNORB-Elev', 'cub': 'CUB-200',
          'nabirds': 'NABirds', 'oxford_flowers': 'Flowers', 'stanford_dogs': 'Dogs',
          'stanford_cars': 'Cars'}


def _task_sections(rows: Sequence[Row]) -> list[tuple[str, list[str]]]:
  """[(section title, its tasks present)]: Natural / Specialized / Structured, FGVC, Other."""
  present = set(task_columns(rows))
  out = [(g.capitalize(), [t for t in ts if t in present]) for g, ts in tasks_lib.GROUPS.items()]
  out.append(('FGVC', [t for t in tasks_lib.FGVC_TASKS if t in present]))
  known = set(tasks_lib.VTAB_TASKS) | set(tasks_lib.FGVC_TASKS)
  out.append(('Other', sorted(present - known)))
  return [(title, ts) for title, ts in out if ts]


def bar_chart(rows: Sequence[Row], path: str) -> bool:
  """Writes `figure(rows)` to `path` (PNG, or any format matplotlib knows by the suffix).
  Returns False, writing nothing, when there is no value to draw."""
  fig = figure(rows)
  if fig is None:
    return False
  import matplotlib.pyplot as plt
  fig.savefig(path, dpi=130)
  plt.close(fig)
  return True


def figure(rows: Sequence[Row]) -> Any:
  """The figure: per-task top-1 grouped by Natural / Specialized / Structured (then FGVC and other
  tasks), one colour per row, mean ± std over seeds as error bars; on the right the group means
  (partial groups labelled 'k/n tasks'); the legend below, inside the canvas. None: no value."""
  sections = _task_sections(rows)
  rows = [r for r in rows if r.cells]
  groups = [g for g in group_columns(rows) if any(g in r.cells for r in rows)]
  if not rows or not sections:
    return None
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  tasks = [t for _, ts in sections for t in ts]
  gap = 0.6  # between sections
  xs, x = [], 0.0
  for _, ts in sections:
    xs += [x + i for i in range(len(ts))]
    x += len(ts) + gap
  xs = np.asarray(xs)
  colours = plt.get_cmap('tab10' if len(rows) <= 10 else 'tab20')(np.arange(len(rows)))
  width = 0.8 / len(rows)
  ratios = [max(len(tasks) + gap * (len(sections) - 1), 2.0)] + ([max(len(groups), 1.5)]
                                                                   if groups else [])
  fig, axes = plt.subplots(1, len(ratios), figsize=(min(2.2 + 0.55 * sum(ratios), 20), 4.6),
                           gridspec_kw={'width_ratios': ratios}, squeeze=False)
  ax = axes[0, 0]
  for i, r in enumerate(rows):
    cells = [r.cells.get(t) for t in tasks]
    ax.bar(xs + (i - (len(rows) - 1) / 2) * width,
           [np.nan if c is None else 100 * c.mean for c in cells], width, color=colours[i],
           yerr=_errors(cells), capsize=2, error_kw={'elinewidth': 0.8},
           label=_legend_name(r, rows))
  ax.set_xticks(xs, [_SHORT.get(t, t) for t in tasks], rotation=45, ha='right',
                fontsize='small')
  ax.set_ylabel('top-1 (%)')
  top = max([100 * (c.mean + c.std) for r in rows for c in r.cells.values()] + [1.0])
  ax.set_ylim(0, min(100.0, top * 1.18) if top <= 100 else top * 1.18)
  start = 0.0
  for title, ts in sections:  # section titles above, thin separators between
    ax.text(start + (len(ts) - 1) / 2, 1.01, title, transform=ax.get_xaxis_transform(),
            ha='center', va='bottom', fontsize='medium', fontweight='bold')
    if start > 0:
      ax.axvline(start - (gap + 1) / 2, color='0.75', linewidth=0.8)
    start += len(ts) + gap
  ax.set_xlim(xs.min() - 0.6, xs.max() + 0.6)
  ax.grid(axis='y', alpha=0.3)
  if groups:
    gx = axes[0, 1]
    x = np.arange(len(groups))
    for i, r in enumerate(rows):
      cells = [r.cells.get(g) for g in groups]
      gx.bar(x + (i - (len(rows) - 1) / 2) * width,
             [np.nan if c is None else 100 * c.mean for c in cells], width, color=colours[i],
             yerr=_errors(cells), capsize=2, error_kw={'elinewidth': 0.8})
    gx.set_xticks(x, [_group_label(g, rows) for g in groups], rotation=45, ha='right',
                  fontsize='small')
    gx.set_ylim(ax.get_ylim())
    gx.set_title('group means', fontsize='medium', fontweight='bold')
    gx.grid(axis='y', alpha=0.3)
  fig.legend(*ax.get_legend_handles_labels(), loc='lower center', ncol=min(len(rows), 3),
             fontsize='small', frameon=False)
  fig.tight_layout(rect=(0, 0.06 + 0.045 * ((len(rows) - 1) // 3), 1, 1))
  return fig


def _errors(cells: Sequence[Cell | None]) -> list[float] | None:
  """Std over seeds (%) as error bars; none drawn for single-seed values."""
  err = [0.0 if c is None or c.n < 2 else 100 * c.std for c in cells]
  return err if any(err) else None


def _legend_name(r: Row, rows: Sequence[Row]) -> str:
  """The variant, plus the backbone / config and selection only where rows differ in them."""
  parts = [r.variant]
  if len({x.config for x in rows}) > 1:
    parts.append(r.config if len(r.config) <= 40 else r.config[:37] + '...')
  if len({x.selection for x in rows}) > 1:
    parts.append(r.selection.split(' (')[0])
  return ', '.join(parts)


def _group_label(group: str, rows: Sequence[Row]) -> str:
  """'natural' or 'natural (4/7 tasks)' when some row lacks tasks of the group."""
  members = tasks_lib.GROUPS.get(group)
  if not members:
    return group
  have = min(sum(t in r.cells for t in members) for r in rows if group in r.cells) if any(
      group in r.cells for r in rows) else 0
  return group if have == len(members) else f'{group} ({have}/{len(members)} tasks)'
