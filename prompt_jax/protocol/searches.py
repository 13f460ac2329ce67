"""The papers' evaluation protocols as data: task sets, hyperparameter searches, seeds.

  expand_tasks('natural,eurosat')   # -> ('caltech101', ..., 'sun397', 'eurosat')
  SEARCHES['vpt']                   # VPT's lr x wd grid, trials train800 -> val200

No TensorFlow (task metadata from data/tasks.py); used by prompt_jax/protocol/sweep.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from prompt_jax.data import tasks

# CoOp's 11 base-to-novel datasets (SAP), as data/fewshot.py names them.
B2N_TASKS: tuple[str, ...] = ('imagenet', 'caltech101', 'oxford_pets', 'stanford_cars',
                              'oxford_flowers', 'food101', 'fgvc_aircraft', 'sun397', 'dtd',
                              'eurosat', 'ucf101')

TASK_SETS: dict[str, tuple[str, ...]] = {
    'vtab': tasks.VTAB_TASKS, **tasks.GROUPS, 'fgvc': tasks.FGVC_TASKS, 'b2n': B2N_TASKS,
}

# Seeds of the releases' published final runs.
RELEASE_SEEDS: dict[str, tuple[int, ...]] = {
    'vpt': (42, 44, 82, 100, 800),    # KMnP/vpt tune_vtab.py final runs (batch 64)
    'coop': (1, 2, 3),                # CoOp / SAP few-shot seeds (data.fewshot_seed)
}


def expand_tasks(spec: str) -> tuple[str, ...]:
  """A comma list of task-set names (TASK_SETS) and task names -> task names, in order, without
  repeats. VTAB aliases become their canonical names; anything else is kept as written (FGVC
  and few-shot datasets), except a name that is none of these, which is an error."""
  known = set(tasks.FGVC_TASKS) | set(B2N_TASKS)
  out: list[str] = []
  for token in (t.strip() for t in spec.split(',')):
    if not token:
      continue
    if token in TASK_SETS:
      out.extend(TASK_SETS[token])
    elif tasks.is_vtab_task(token):
      out.append(tasks.canonical_task(token))
    elif token in known:
      out.append(token)
    else:
      raise ValueError(f'unknown task or task set {token!r}; sets: {", ".join(TASK_SETS)}; '
                       f'tasks: {", ".join(tasks.VTAB_TASKS + tasks.FGVC_TASKS + B2N_TASKS)}')
  if not out:
    raise ValueError('no task given (--tasks=vtab, natural, specialized, structured, fgvc, b2n '
                     'or a comma list of tasks)')
  return tuple(dict.fromkeys(out))


@dataclasses.dataclass(frozen=True)
class Search:
  """A grid search: each trial trains on `train_split` and is scored by its final-epoch top-1 on
  `val_split` (never a test split); the best trial's values retrain on `final_split` with every
  seed, scored on test. Ties go to the smaller learning rate (as VPT's find_best_lrwd), then to
  grid order."""

  grid: dict[str, tuple[Any, ...]]   # dotted config key -> values
  train_split: str
  val_split: str
  final_split: str

  def trials(self) -> list[dict[str, Any]]:
    """Every combination, in grid order (the first key varies slowest)."""
    keys = list(self.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]


VPT_LRS = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
VPT_WDS = (0.01, 0.001, 1e-4, 0.0)

# VPT's VTAB-1k protocol (docs/specs/01-vit-vtab-vpt.md): base lr x wd (lr scaled by batch/256
# in the config), train800 -> val200, then train800val200 -> test.
SEARCHES: dict[str, Search] = {
    'vpt': Search(grid={'train.lr': VPT_LRS, 'train.wd': VPT_WDS}, train_split='train800',
                  val_split='val200', final_split='train800val200'),
}

# The same protocol on FGVC's json splits (data.layout='fgvc'): train -> val, then trainval.
FGVC_SPLITS = {'train800': 'train', 'val200': 'val', 'train800val200': 'trainval'}
# Split names that hold test data; a search trial must never evaluate on them.
TEST_SPLITS = ('test',)


def search_splits(search: Search, layout: str) -> tuple[str, str, str]:
  """(train, val, final) split names of `search` for a data source layout ('fgvc' or other)."""
  names = (search.train_split, search.val_split, search.final_split)
  if layout == 'fgvc':
    return tuple(FGVC_SPLITS.get(n, n) for n in names)  # type: ignore[return-value]
  return names
