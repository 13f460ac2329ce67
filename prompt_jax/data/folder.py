"""Image folders: the shared "vtab-1k" layout and VPT's FGVC json splits.

layout='vtab1k': <data_dir>/<task>/{train800,val200,train800val200,test}.txt, one
  `relative/path.jpg label` per line, paths relative to <data_dir>/<task>/ (task folder names per
  docs/specs/01-vit-vtab-vpt.md; 'cifar' is cifar100; any alias of `data/tasks.py` finds the
  folder). Class count from the VTAB task table; a label outside it is an error naming the file
  and line. Fields are split at the last run of spaces or tabs.
layout='fgvc': <data_dir>/{train,val,test}.json mapping relative path -> label (VPT: CUB-200,
  NABirds, Oxford Flowers, Stanford Dogs/Cars); images under <data_dir>/<image_root>/. Labels are
  remapped to 0..C-1 by sorted raw label (as VPT does); 'trainval' = train + val.
Order is file order. JPEGs are decoded as PIL decodes them (`preprocess.decode_image`), and images
go through the same `pipeline.prepare_example` as TFDS, so one image gives identical arrays
through both sources.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import tensorflow as tf

from prompt_jax.data import pipeline
from prompt_jax.data import preprocess
from prompt_jax.data import registry
from prompt_jax.data import tasks
from prompt_jax.util import config as config_lib
from prompt_jax.data import vtab

VTAB1K_SPLITS = ('train800', 'val200', 'train800val200', 'test')
FGVC_IMAGE_ROOT = {'cub': 'images', 'nabirds': 'images', 'stanford_dogs': 'Images',
                   'stanford_cars': '', 'oxford_flowers': ''}


def read_list(path: str, num_classes: int) -> tuple[list[str], list[int]]:
  """A vtab-1k split file -> (relative paths, labels) in file order.

  A line is `path label`, split at the last run of spaces or tabs (the path may hold spaces).
  A line without an integer label, or a label outside [0, num_classes), is a ValueError naming
  the file and the line.
  """
  paths, labels = [], []
  with tf.io.gfile.GFile(path) as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      parts = line.strip().rsplit(None, 1)
      if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
        raise ValueError(f'{path}:{lineno}: expected "relative/path label", got {line.strip()!r}')
      y = int(parts[1])
      if not 0 <= y < num_classes:
        raise ValueError(f'{path}:{lineno}: label {y} outside [0, {num_classes}) for this task; '
                         'is it the right task folder?')
      paths.append(parts[0])
      labels.append(y)
  return paths, labels


def decode_file(path: tf.Tensor) -> tf.Tensor:
  """Path -> uint8[H, W, 3] (jpg/png/bmp/gif first frame), decoded as PIL does."""
  return preprocess.decode_image(tf.io.read_file(path), channels=3)


def _missing(path: str, hint: str) -> vtab.DatasetNotFoundError:
  return vtab.DatasetNotFoundError(f'{path} not found. {hint}')


class FolderSource(pipeline.TfSource):
  """Source over lists of (image file, label)."""

  def __init__(self, files: dict[str, tuple[list[str], list[int]]], num_classes: int,
               opts: pipeline.ImageOptions, **kw):
    self.files = files

    def read(split: str) -> tf.data.Dataset:
      paths, labels = files[split]
      ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int64)))
      return ds.map(lambda p, y: {'image': decode_file(p), 'label': y},
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    super().__init__(read, {k: len(v[1]) for k, v in files.items()}, num_classes, opts, **kw)

  def input_files(self, split: str) -> list[str]:
    return list(self.files[split][0])

  def identity_extra(self, split: str) -> Any:
    return [self.files[split][0], list(self.files[split][1])]  # file order and labels


def folder_candidates(task: str) -> list[str]:
  """Folder names a task may have under data_dir: as given, its canonical name, its shared
  vtab-1k folder name (tasks.FOLDER_NAMES: cifar100 -> cifar)."""
  canon = tasks.canonical_task(task)
  names = [task, canon, tasks.FOLDER_NAMES.get(canon, canon)]
  return list(dict.fromkeys(names))


def vtab1k_files(data_dir: str, task: str) -> dict[str, tuple[list[str], list[int]]]:
  names = folder_candidates(task)
  roots = [os.path.join(data_dir, n) for n in names]
  root = next((r for r in roots if tf.io.gfile.exists(r)), roots[-1])
  num_classes = tasks.NUM_CLASSES[tasks.canonical_task(task)]
  out = {}
  for split in VTAB1K_SPLITS:
    path = os.path.join(root, f'{split}.txt')
    if not tf.io.gfile.exists(path):
      raise _missing(path, f'Expected the vtab-1k layout {data_dir}/<task>/<split>.txt (task '
                     f'folder one of {names}).')
    rel, labels = read_list(path, num_classes)
    out[split] = ([os.path.join(root, p) for p in rel], labels)
  return out


def fgvc_files(data_dir: str, image_root: str
               ) -> tuple[dict[str, tuple[list[str], list[int]]], int]:
  raw = {}
  for split in tasks.FGVC_SPLITS:
    path = os.path.join(data_dir, f'{split}.json')
    if not tf.io.gfile.exists(path):
      raise _missing(path, 'Expected VPT-style FGVC splits train.json/val.json/test.json.')
    with tf.io.gfile.GFile(path) as f:
      raw[split] = json.load(f)
  ids = sorted(set(raw['train'].values()))
  remap = {c: i for i, c in enumerate(ids)}
  root = os.path.join(data_dir, image_root)
  out = {s: ([os.path.join(root, p) for p in d], [remap[y] for y in d.values()])
         for s, d in raw.items()}
  out['trainval'] = (out['train'][0] + out['val'][0], out['train'][1] + out['val'][1])
  return out, len(ids)


@registry.register('folder')
def _factory(cfg: ml_collections.ConfigDict) -> FolderSource:
  opts = pipeline.ImageOptions.from_config(cfg)
  layout = config_lib.field(cfg, 'data.layout')
  if not config_lib.field(cfg, 'data.data_dir'):
    raise ValueError('config.data.data_dir must point at the image folders')
  if layout == 'vtab1k':
    files = vtab1k_files(cfg.data_dir, cfg.task)
    num_classes = tasks.NUM_CLASSES[tasks.canonical_task(cfg.task)]
  elif layout == 'fgvc':
    root = config_lib.field(cfg, 'data.image_root')
    root = FGVC_IMAGE_ROOT.get(cfg.task, '') if root is None else root
    files, num_classes = fgvc_files(cfg.data_dir, root)
  else:
    raise ValueError(f"layout must be 'vtab1k' or 'fgvc', got {layout!r}")
  return FolderSource(files, num_classes, opts, **vtab.source_kwargs(cfg))
