"""Prepares VTAB-1k datasets with TFDS (network needed): download_and_prepare per task.

  python -m prompt_jax.data.prepare --tasks=vtab --data_dir=/data/tfds
  python -m prompt_jax.data.prepare --tasks=cifar100,dtd --data_dir=/data/tfds

Prints which datasets need a manual download first (TFDS cannot fetch them) and where to put them.
"""

from __future__ import annotations

import argparse
import sys

MANUAL = {
    'diabetic_retinopathy': 'Kaggle "diabetic-retinopathy-detection": place the zip parts in '
                            '<data_dir>/downloads/manual/ (needs a Kaggle account).',
    'sun397': 'sun397/tfds downloads the SUN397 tarball (~37 GB); if the mirror is down, place '
              'SUN397.tar.gz in <data_dir>/downloads/manual/.',
    'dmlab': 'dmlab downloads from GCS (~3 GB); no manual step, but slow.',
}


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
  args = p.parse_args(argv)
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
