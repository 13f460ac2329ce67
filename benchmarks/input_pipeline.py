"""Input-pipeline throughput on CPU (prints JSON, never asserts).

  python benchmarks/input_pipeline.py [--image_size=224] [--n=256] [--batch_size=64]

tfds: the 'vtab' source on tfds.testing.mock_data (cifar100 at its real 32×32 size).
folder: the 'folder' source on generated 500×375 PNGs in a temporary vtab-1k tree.
Both report eval streaming (file order) and a seeded training pass (load + shuffle).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import ml_collections
import numpy as np
from PIL import Image


def _rate(src, split, batch_size, **kw) -> float:
  t, n = time.perf_counter(), 0
  for b in src.iterate(split, batch_size, **kw):
    n += int(b['mask'].sum())
  return n / (time.perf_counter() - t)


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(data_dir=None, resize='bilinear', crop_pct=1.0,
                                     normalization='imagenet', augment=False, sampler='shuffle',
                                     images_per_class=2, cache_train=False))
  c.update(kw)
  return c


def bench_tfds(n, image_size, batch_size) -> dict:
  import tensorflow_datasets as tfds
  from prompt_jax.data import registry, vtab
  vtab.base_split_sizes = lambda b: {'train': 50000, 'test': 10000}
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
    src = registry.get_source(_cfg(source='vtab', task='cifar100', image_size=image_size))
    return {'eval_images_per_s': _rate(src, 'test', batch_size),
            'train_images_per_s': _rate(src, 'train800', batch_size, shuffle_seed=0)}


def bench_folder(n, image_size, batch_size) -> dict:
  from prompt_jax.data import registry
  with tempfile.TemporaryDirectory() as root:
    rng = np.random.default_rng(0)
    lines = []
    os.makedirs(os.path.join(root, 'cifar', 'img'))
    for i in range(n):
      arr = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
      Image.fromarray(arr).save(os.path.join(root, 'cifar', 'img', f'{i}.png'))
      lines.append(f'img/{i}.png {i % 100}')
    for s in ('train800', 'val200', 'train800val200', 'test'):
      with open(os.path.join(root, 'cifar', f'{s}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    src = registry.get_source(_cfg(source='folder', layout='vtab1k', task='cifar', data_dir=root,
                                   image_size=image_size))
    return {'eval_images_per_s': _rate(src, 'test', batch_size),
            'train_images_per_s': _rate(src, 'train800', batch_size, shuffle_seed=0)}


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--n', type=int, default=256)
  p.add_argument('--batch_size', type=int, default=64)
  a = p.parse_args()
  out = {'image_size': a.image_size, 'n': a.n, 'batch_size': a.batch_size,
         'cpu_count': os.cpu_count(),
         'tfds_mock': bench_tfds(a.n, a.image_size, a.batch_size),
         'folder_png': bench_folder(a.n, a.image_size, a.batch_size)}
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
