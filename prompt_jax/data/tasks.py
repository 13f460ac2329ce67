"""VTAB-1k and FGVC task metadata: names, class counts, groups, aliases (no TensorFlow import).

The TFDS reading of the VTAB tasks (split strings, label transforms) is in data/vtab.py; this module
is what configs, the report and the sweep need without loading TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Task -> number of classes, in the papers' column order.
NUM_CLASSES: dict[str, int] = {
    'caltech101': 102, 'cifar100': 100, 'dtd': 47, 'oxford_flowers102': 102,
    'oxford_iiit_pet': 37, 'svhn': 10, 'sun397': 397,
    'patch_camelyon': 2, 'eurosat': 10, 'resisc45': 45, 'diabetic_retinopathy': 5,
    'clevr_count': 8, 'clevr_dist': 6, 'dmlab': 6, 'kitti': 4, 'dsprites_loc': 16,
    'dsprites_ori': 16, 'smallnorb_azi': 18, 'smallnorb_ele': 9,
}
VTAB_TASKS: tuple[str, ...] = tuple(NUM_CLASSES)

GROUPS: dict[str, tuple[str, ...]] = {
    'natural': ('caltech101', 'cifar100', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn',
                'sun397'),
    'specialized': ('patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy'),
    'structured': ('clevr_count', 'clevr_dist', 'dmlab', 'kitti', 'dsprites_loc', 'dsprites_ori',
                   'smallnorb_azi', 'smallnorb_ele'),
}

# Other names a task goes by: the shared "vtab-1k" folder name ('cifar') and the short names of
# the papers' tables (SHIP / DA-VPT configs).
ALIASES: dict[str, str] = {
    'cifar': 'cifar100', 'flowers102': 'oxford_flowers102', 'oxford_flowers': 'oxford_flowers102',
    'pets': 'oxford_iiit_pet', 'oxford_pet': 'oxford_iiit_pet', 'camelyon': 'patch_camelyon',
    'retinopathy': 'diabetic_retinopathy',
}
# Folder names of the shared "vtab-1k" layout that differ from the task name.
FOLDER_NAMES: dict[str, str] = {'cifar100': 'cifar'}

# The pinned TFDS name[/config]:version of each task (data/vtab.py's TASKS asserts the same), for
# finding a prepared dataset without TensorFlow (prompt_jax/train/preflight.py).
TFDS_NAMES: dict[str, str] = {
    'caltech101': 'caltech101:3.*.*', 'cifar100': 'cifar100:3.*.*', 'dtd': 'dtd:3.*.*',
    'oxford_flowers102': 'oxford_flowers102:2.*.*', 'oxford_iiit_pet': 'oxford_iiit_pet:4.*.*',
    'svhn': 'svhn_cropped:3.*.*', 'sun397': 'sun397/tfds:4.*.*',
    'patch_camelyon': 'patch_camelyon:2.*.*', 'eurosat': 'eurosat/rgb:2.*.*',
    'resisc45': 'resisc45:3.*.*',
    'diabetic_retinopathy': 'diabetic_retinopathy_detection/btgraham-300:3.*.*',
    'dmlab': 'dmlab:2.0.1', 'kitti': 'kitti:3.2.0', 'clevr_count': 'clevr:3.*.*',
    'clevr_dist': 'clevr:3.*.*', 'dsprites_loc': 'dsprites:2.*.*', 'dsprites_ori': 'dsprites:2.*.*',
    'smallnorb_azi': 'smallnorb:2.*.*', 'smallnorb_ele': 'smallnorb:2.*.*',
}
# Examples of each VTAB-1k split name but test (every task's TFDS train split is larger).
VTAB1K_SIZES: dict[str, int] = {'train800': 800, 'val200': 200, 'train800val200': 1000,
                                'train1000': 1000}
# The split names each source offers, told without loading it (`data.vtab`, `data.digits` and the
# FGVC folder layout build exactly these).
VTAB1K_SPLITS: tuple[str, ...] = ('train800', 'val200', 'train800val200', 'train1000', 'test')
DIGITS_SPLITS: dict[str, tuple[str, ...]] = {
    'pretrain': ('train', 'val'), 'downstream': ('train800', 'val200', 'train800val200', 'test')}
FGVC_SPLITS: tuple[str, ...] = ('train', 'val', 'test')

# VPT's FGVC benchmark (folder source, layout='fgvc').
FGVC_TASKS: tuple[str, ...] = ('cub', 'nabirds', 'oxford_flowers', 'stanford_dogs', 'stanford_cars')


def canonical_task(name: str) -> str:
  """A VTAB task name or alias -> its task name; an unknown name is a KeyError listing them."""
  name = ALIASES.get(name, name)
  if name not in NUM_CLASSES:
    raise KeyError(f'unknown VTAB task {name!r}; known: {sorted(NUM_CLASSES)} '
                   f'(aliases: {sorted(ALIASES)})')
  return name


def is_vtab_task(name: str) -> bool:
  return ALIASES.get(name, name) in NUM_CLASSES


def group_means(acc_by_task: Mapping[str, float]) -> dict[str, float]:
  """{task: top-1} -> {'natural', 'specialized', 'structured': mean over the group's tasks present,
  'mean': average of the three group means (only when all three groups are complete)}."""
  acc = {canonical_task(k): float(v) for k, v in acc_by_task.items() if is_vtab_task(k)}
  out, complete = {}, True
  for group, tasks in GROUPS.items():
    have = [acc[t] for t in tasks if t in acc]
    complete &= len(have) == len(tasks)
    if have:
      out[group] = float(np.mean(have))
  if complete:
    out['mean'] = float(np.mean([out[g] for g in GROUPS]))
  return out
