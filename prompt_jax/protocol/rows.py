"""The results table's model: a row per (method, variant, config, selection), a cell per task or
group column (mean +- std over seeds), and the column order. Built by `report`, drawn by
`figure`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from prompt_jax.data import tasks as tasks_lib

GROUP_COLUMNS = ('natural', 'specialized', 'structured', 'mean')
FGVC_COLUMN = 'fgvc'


@dataclasses.dataclass
class Cell:
  mean: float
  std: float
  n: int
  seeds: list[Any]


@dataclasses.dataclass
class Row:
  method: str
  variant: str
  config: str
  selection: str
  cells: dict[str, Cell]       # task or group column -> value (fractions in [0, 1])


def cell_of(values: dict[Any, float]) -> Cell:
  v = np.asarray(list(values.values()), np.float64)
  return Cell(float(v.mean()), float(v.std()), len(v), sorted(values, key=str))


def group_cells(by_task: dict[str, dict[Any, float]]) -> dict[str, Cell]:
  """Group means of the per-task means; their std over the seeds every task of the group has."""
  means = {t: float(np.mean(list(v.values()))) for t, v in by_task.items()}
  out = {}
  g = tasks_lib.group_means({t: m for t, m in means.items() if tasks_lib.is_vtab_task(t)})
  seeds = set.intersection(*(set(v) for v in by_task.values())) if by_task else set()
  per_seed = [tasks_lib.group_means({t: v[s] for t, v in by_task.items()
                                     if tasks_lib.is_vtab_task(t)}) for s in sorted(seeds, key=str)]
  columns = {c: g[c] for c in GROUP_COLUMNS if c in g}
  per_seed_cols = [{c: p[c] for c in GROUP_COLUMNS if c in p} for p in per_seed]
  fgvc = [t for t in tasks_lib.FGVC_TASKS if t in means]
  if len(fgvc) == len(tasks_lib.FGVC_TASKS):
    columns[FGVC_COLUMN] = float(np.mean([means[t] for t in fgvc]))
    for p, s in zip(per_seed_cols, sorted(seeds, key=str)):
      p[FGVC_COLUMN] = float(np.mean([by_task[t][s] for t in fgvc]))
  for c, m in columns.items():
    vals = [p[c] for p in per_seed_cols if c in p]
    std = float(np.std(vals)) if len(vals) > 1 else 0.0
    out[c] = Cell(m, std, len(vals) or 1, sorted(seeds, key=str))
  return out


def task_columns(rows: Sequence[Row]) -> list[str]:
  """VTAB tasks in the papers' order, then FGVC, then any other task (sorted)."""
  present = {c for r in rows for c in r.cells} - set(GROUP_COLUMNS) - {FGVC_COLUMN}
  vtab = [t for t in tasks_lib.VTAB_TASKS if t in present]
  fgvc = [t for t in tasks_lib.FGVC_TASKS if t in present]
  return vtab + fgvc + sorted(present - set(vtab) - set(fgvc))


def group_columns(rows: Sequence[Row]) -> list[str]:
  have = {c for r in rows for c in r.cells}
  out = [c for c in GROUP_COLUMNS if any(t in have for t in tasks_lib.VTAB_TASKS)]
  return out + ([FGVC_COLUMN] if FGVC_COLUMN in have else [])
