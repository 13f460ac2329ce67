"""Prepares VTAB-1k datasets with TFDS (network needed): download_and_prepare per task.

  python -m prompt_jax.data.prepare --tasks=vtab --data_dir=/data/tfds
  python -m prompt_jax.data.prepare --tasks=cifar100,dtd --data_dir=/data/tfds
  python -m prompt_jax.data.prepare --mock --tasks=vtab --data_dir=/tmp/vtab_mock  # offline

Prints which datasets need a manual download first (TFDS cannot fetch them) and where to put them.

--mock writes no TFDS data but a fake "vtab-1k" folder tree (`data.source=folder`, the layout of
data/folder.py): <data_dir>/<task folder>/{train800,val200,train800val200,test}.txt and images of
each task's real shape (JPEG; greyscale PNG for dSprites / smallNORB; MOCK_SHAPES: a typical size
for tasks of variable size) and labels in its real class range (label i % classes),
--mock_examples per split (train800val200 = train800 + val200). The images are smooth
class-coloured gradients plus noise: a few epochs learn them, so a mock sweep's table is not all
chance. For trying the protocol offline, never for numbers.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from prompt_jax.data import tasks as tasks_lib

MANUAL = {
    'diabetic_retinopathy': 'Kaggle "diabetic-retinopathy-detection": place the zip parts in '
                            '<data_dir>/downloads/manual/ (needs a Kaggle account).',
    'sun397': 'sun397/tfds downloads the SUN397 tarball (~37 GB); if the mirror is down, place '
              'SUN397.tar.gz in <data_dir>/downloads/manual/.',
    'dmlab': 'dmlab downloads from GCS (~3 GB); no manual step, but slow.',
}


# A representative (H, W, C) of each task's TFDS images (variable-size datasets: a typical size).
MOCK_SHAPES = {
    'caltech101': (200, 300, 3), 'cifar100': (32, 32, 3), 'dtd': (300, 400, 3),
    'oxford_flowers102': (500, 667, 3), 'oxford_iiit_pet': (375, 500, 3), 'svhn': (32, 32, 3),
    'sun397': (300, 400, 3), 'patch_camelyon': (96, 96, 3), 'eurosat': (64, 64, 3),
    'resisc45': (256, 256, 3), 'diabetic_retinopathy': (300, 300, 3), 'clevr_count': (320, 480, 3),
    'clevr_dist': (320, 480, 3), 'dmlab': (360, 480, 3), 'kitti': (375, 1242, 3),
    'dsprites_loc': (64, 64, 1), 'dsprites_ori': (64, 64, 1), 'smallnorb_azi': (96, 96, 1),
    'smallnorb_ele': (96, 96, 1),
}


def _mock_image(rng, shape: tuple[int, int, int], label: int, classes: int):
  h, w, c = shape
  hue = 2 * np.pi * label / classes
  base = 127 + 100 * np.cos(hue + np.arange(c) * 2.1)  # class colour
  ramp = np.linspace(-30, 30, w)[None, :, None] * np.cos(hue) + np.linspace(
      -30, 30, h)[:, None, None] * np.sin(hue)
  img = base + ramp + rng.normal(0, 4, (h, w, c))
  return np.clip(img, 0, 255).astype(np.uint8)


def write_mock(data_dir: str, tasks: list[str], examples: int = 32, seed: int = 0
               ) -> dict[str, str]:
  """The fake vtab-1k tree (see the module docstring); returns {task: its folder}."""
  from PIL import Image
  names = list(tasks_lib.VTAB_TASKS) if tasks == ['vtab'] else [
      tasks_lib.canonical_task(t) for t in tasks]
  out = {}
  for t_i, task in enumerate(names):
    classes, shape = tasks_lib.NUM_CLASSES[task], MOCK_SHAPES[task]
    root = os.path.join(data_dir, tasks_lib.FOLDER_NAMES.get(task, task))
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    rng = np.random.default_rng([seed, t_i])
    lines = {}
    for split in ('train800', 'val200', 'test'):
      lines[split] = []
      for i in range(examples):
        label = (i + examples * ('val' in split)) % classes
        rel = f'images/{split}_{i}.' + ('png' if shape[-1] == 1 else 'jpg')
        img = _mock_image(rng, shape, label, classes)
        Image.fromarray(img[..., 0] if shape[-1] == 1 else img).save(os.path.join(root, rel),
                                                                     quality=90)
        lines[split].append(f'{rel} {label}\n')
    lines['train800val200'] = lines['train800'] + lines['val200']
    for split, rows in lines.items():
      with open(os.path.join(root, f'{split}.txt'), 'w') as f:
        f.writelines(rows)
    out[task] = root
  return out


def tfds_names(tasks: list[str]) -> dict[str, str]:
  """Task names (or 'vtab' for all 19) -> {task: pinned TFDS name}."""
  from prompt_jax.data import vtab
  if tasks == ['vtab']:
    tasks = list(vtab.TASKS)
  canonical = [vtab.tasks.canonical_task(t) for t in tasks]
  return {t: vtab.TASKS[t].tfds_name for t in canonical}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--tasks', required=True, help="'vtab' or a comma list of task names")
  p.add_argument('--data_dir', required=True)
  p.add_argument('--mock', action='store_true',
                 help='offline: write a fake vtab-1k folder tree (data.source=folder) instead')
  p.add_argument('--mock_examples', type=int, default=32, help='images per split with --mock')
  args = p.parse_args(argv)
  if args.mock:
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    roots = write_mock(args.data_dir, tasks, args.mock_examples)
    print(f'wrote mock vtab-1k folders for {len(roots)} tasks under {args.data_dir} '
          f'({args.mock_examples} images per split); use them with '
          f'--config.data.source=folder --config.data.data_dir={os.path.abspath(args.data_dir)}')
    return 0
  import tensorflow_datasets as tfds
  names = tfds_names([t.strip() for t in args.tasks.split(',') if t.strip()])
  failed, done = {}, set()
  for task, name in names.items():
    if task in MANUAL:
      print(f'[{task}] note: {MANUAL[task]}')
    if name in done:  # clevr_count/clevr_dist etc. share one dataset
      continue
    print(f'[{task}] preparing {name} in {args.data_dir} ...', flush=True)
    try:
      tfds.builder(name, data_dir=args.data_dir).download_and_prepare()
      done.add(name)
    except Exception as e:
      failed[task] = f'{type(e).__name__}: {e}'
  for task, err in failed.items():
    print(f'FAILED {task} ({names[task]}): {err}')
  print(f'prepared {len(done)} datasets; {len(failed)} failed')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
