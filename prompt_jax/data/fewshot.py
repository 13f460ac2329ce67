"""Few-shot CLIP data (CoOp protocol): k-shot sampling, base/novel classes, CoOp split files, TFDS.

Data source 'fewshot' (`config.data`):
  task        dataset name (a key of TFDS_NAMES, or any name with `split_file`)
  split_file  CoOp split JSON {"train": [[relative image path, label, classname], ...], "val": ...,
              "test": ...}; images under `data_dir` (the CoOp image folder). Empty: read TFDS.
  shots       k images per class from 'train' (and min(k, 4) from 'val', as CoOp); -1 = all.
  fewshot_seed  the sampling seed (CoOp runs seeds 1, 2, 3); sampling is deterministic in it.
  subset      'all' | 'base' | 'novel': classes sorted by label, the first ceil(n/2) are base;
              labels are re-indexed 0..C'-1 within the subset (class names follow).
  image_size, normalization ('clip'), augment (train: random resized crop (0.08-1, 3/4-4/3) +
              horizontal flip, bicubic; eval: bicubic resize of the short side + centre crop).
Splits: 'train', 'val', 'test'. The source has `classnames` (what SAP's text side needs).

TFDS_NAMES maps the CoOp datasets that exist in TFDS; TFDS splits are NOT CoOp's splits (use the
split files for paper numbers). Folder-only (no TFDS dataset, or not the CoOp form): FGVCAircraft,
UCF101 (CoOp uses middle video frames), StanfordCars (TFDS `cars196` download is broken; readable
only if already prepared), ImageNet needs a manual TFDS download (`imagenet2012`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from typing import Any
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np

from prompt_jax.data import preprocess
from prompt_jax.data import registry
from prompt_jax.util import config as config_lib
from prompt_jax.data.source import Batch, batch_indices, host_rows

TFDS_NAMES = {
    'imagenet': 'imagenet2012',
    'caltech101': 'caltech101',
    'oxford_pets': 'oxford_iiit_pet',
    'stanford_cars': 'cars196',
    'oxford_flowers': 'oxford_flowers102',
    'food101': 'food101',
    'sun397': 'sun397/standard-part1-120k',
    'dtd': 'dtd',
    'eurosat': 'eurosat/rgb',
}
FOLDER_ONLY = ('fgvc_aircraft', 'ucf101')
TFDS_SPLITS = {'imagenet2012': {'val': 'validation', 'test': 'validation'},
               'oxford_flowers102': {'val': 'validation'}, 'dtd': {'val': 'validation'},
               'caltech101': {'val': 'test'}, 'oxford_iiit_pet': {'val': 'test'},
               'cars196': {'val': 'test'}, 'food101': {'val': 'validation', 'test': 'validation'},
               'eurosat/rgb': {'val': 'train', 'test': 'train'},
               'sun397/standard-part1-120k': {'val': 'validation'}}


# ----------------------------------------------------------------------------- protocol


def sample_few_shot(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
  """Sorted indices with `shots` examples of every class (all of a class with fewer); -1 = all.
  Deterministic in (labels, shots, seed)."""
  labels = np.asarray(labels)
  if shots < 0:
    return np.arange(len(labels))
  rng = np.random.default_rng(seed)
  keep = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    keep.append(rng.choice(idx, min(shots, len(idx)), replace=False))
  return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def base_novel_classes(num_classes: int) -> tuple[list[int], list[int]]:
  """Labels sorted; base = first ceil(n/2), novel = the rest."""
  m = math.ceil(num_classes / 2)
  return list(range(m)), list(range(m, num_classes))


def subset_labels(num_classes: int, subset: str) -> list[int]:
  if subset == 'all':
    return list(range(num_classes))
  b, n = base_novel_classes(num_classes)
  if subset not in ('base', 'novel'):
    raise ValueError(f"subset must be 'all', 'base' or 'novel', got {subset!r}")
  return b if subset == 'base' else n


def read_split_json(path: str) -> tuple[dict[str, tuple[list[str], np.ndarray]], list[str]]:
  """CoOp split file -> ({split: (relative paths, labels)}, classnames by label)."""
  with open(path, encoding='utf-8') as f:
    data = json.load(f)
  names: dict[int, str] = {}
  splits = {}
  for split, rows in data.items():
    paths = [r[0] for r in rows]
    labels = np.asarray([int(r[1]) for r in rows], np.int32)
    for r in rows:
      names.setdefault(int(r[1]), str(r[2]))
    splits[split] = (paths, labels)
  n = max(names) + 1 if names else 0
  missing = sorted(set(range(n)) - set(names))
  if missing:
    raise ValueError(f'{path}: labels {missing[:10]} never appear, class names unknown')
  return splits, [names[i] for i in range(n)]


# ----------------------------------------------------------------------------- images


def _decode(item: Any) -> Any:
  from PIL import Image
  if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 3:
    return Image.fromarray(item)
  if isinstance(item, (bytes, np.bytes_)):
    return Image.open(io.BytesIO(bytes(item))).convert('RGB')
  return Image.open(item).convert('RGB')


def random_resized_crop(img: Any, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Any:
  """torchvision's RandomResizedCrop sampling (10 tries, then a centre crop), bicubic."""
  from PIL import Image
  w, h = img.size
  area = w * h
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
      return img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
  side = min(w, h)
  x0, y0 = (w - side) // 2, (h - side) // 2
  return img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + side, y0 + side))


def resize_center_crop(img: Any, size: int) -> Any:
  """Bicubic resize of the short side to `size`, then a centre crop (CLIP's eval transform)."""
  from PIL import Image
  w, h = img.size
  s = size / min(w, h)
  img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
  w, h = img.size
  x0, y0 = (w - size) // 2, (h - size) // 2
  return img.crop((x0, y0, x0 + size, y0 + size))


# ----------------------------------------------------------------------------- the source


@dataclasses.dataclass
class FewShotSource:
  """items: {split: (list of image paths / encoded bytes / uint8 arrays, labels int32)}."""

  items: dict[str, tuple[Sequence[Any], np.ndarray]]
  classnames: list[str]
  image_size: int = 224
  normalization: str = 'clip'
  augment: bool = True
  train_splits: tuple[str, ...] = ('train',)

  @property
  def num_classes(self) -> int:
    return len(self.classnames)

  @property
  def splits(self) -> dict[str, int]:
    return {k: len(v[1]) for k, v in self.items.items()}

  def _image(self, item: Any, rng: np.random.Generator | None) -> np.ndarray:
    img = _decode(item)
    if rng is not None:
      img = random_resized_crop(img, self.image_size, rng)
      if rng.random() < 0.5:
        img = img.transpose(0)  # PIL.Image.FLIP_LEFT_RIGHT
    else:
      img = resize_center_crop(img, self.image_size)
    x = np.asarray(img, np.float32) / 255.0
    return preprocess.normalize(x, self.normalization).astype(np.float32)

  def iterate(self, split: str, batch_size: int, *, shuffle_seed: int | None = None,
              drop_remainder: bool = False, process_index: int = 0,
              process_count: int = 1) -> Iterator[Batch]:
    if split not in self.items:
      raise KeyError(f'split {split!r} not in {sorted(self.items)}')
    paths, labels = self.items[split]
    aug = self.augment and split in self.train_splits and shuffle_seed is not None
    for step, (idx, mask) in enumerate(batch_indices(len(labels), batch_size,
                                                     shuffle_seed=shuffle_seed,
                                                     drop_remainder=drop_remainder)):
      rng = np.random.default_rng([shuffle_seed, step]) if aug else None
      images = np.stack([self._image(paths[i], rng) for i in idx])
      batch = {'image': images, 'label': labels[idx].astype(np.int32), 'mask': mask}
      yield host_rows(batch, process_index, process_count)


def restrict(items: dict[str, tuple[Sequence[Any], np.ndarray]], classnames: list[str],
             classes: list[int]) -> tuple[dict[str, tuple[list[Any], np.ndarray]], list[str]]:
  """Keeps `classes` (old labels) and relabels them 0..len-1 in that order."""
  remap = {c: i for i, c in enumerate(classes)}
  out = {}
  for split, (paths, labels) in items.items():
    keep = [i for i, l in enumerate(labels) if int(l) in remap]
    out[split] = ([paths[i] for i in keep],
                  np.asarray([remap[int(labels[i])] for i in keep], np.int32))
  return out, [classnames[c] for c in classes]


def few_shot_items(items, shots: int, seed: int):
  """k-shot train, min(k, 4)-shot val (CoOp), full test."""
  out = dict(items)
  for split, k in (('train', shots), ('val', min(shots, 4) if shots >= 0 else -1)):
    if split in items:
      paths, labels = items[split]
      idx = sample_few_shot(labels, k, seed)
      out[split] = ([paths[i] for i in idx], labels[idx])
  return out


def build_source(items, classnames, *, shots: int, seed: int, subset: str, image_size: int,
                 normalization: str = 'clip', augment: bool = True) -> FewShotSource:
  """k-shot sampling over ALL classes first (as CoOp), then the base/novel restriction, so a
  class's sampled images do not depend on `subset`."""
  items = few_shot_items(items, shots, seed)
  items, names = restrict(items, classnames, subset_labels(len(classnames), subset))
  return FewShotSource(items, names, image_size, normalization, augment)


def folder_items(split_file: str, image_dir: str):
  splits, names = read_split_json(split_file)
  items = {k: ([os.path.join(image_dir, p) for p in paths], labels)
           for k, (paths, labels) in splits.items()}
  return items, names


def tfds_items(task: str, data_dir: str | None):
  """Encoded images + labels of a CoOp dataset from TFDS (see TFDS_NAMES; not CoOp's splits)."""
  import tensorflow_datasets as tfds
  if task in FOLDER_ONLY:
    raise ValueError(f'{task} is not in TFDS in CoOp form; give data.split_file (CoOp json)')
  name = TFDS_NAMES.get(task, task)
  builder = tfds.builder(name, data_dir=data_dir)
  names = list(builder.info.features['label'].names)
  items = {}
  for split in ('train', 'val', 'test'):
    tf_split = TFDS_SPLITS.get(name, {}).get(split, split)
    ds = builder.as_dataset(split=tf_split, decoders={'image': tfds.decode.SkipDecoding()})
    imgs, labels = [], []
    for ex in tfds.as_numpy(ds):
      imgs.append(ex['image'])
      labels.append(ex['label'])
    items[split] = (imgs, np.asarray(labels, np.int32))
  return items, [n.replace('_', ' ') for n in names]


@registry.register('fewshot')
def _factory(cfg: ml_collections.ConfigDict) -> FewShotSource:
  if config_lib.field(cfg, 'data.split_file'):
    items, names = folder_items(cfg.split_file, cfg.data_dir or '')
  else:
    items, names = tfds_items(cfg.task, cfg.data_dir)
  return build_source(items, names, shots=config_lib.field(cfg, 'data.shots'),
                      seed=config_lib.field(cfg, 'data.fewshot_seed'),
                      subset=config_lib.field(cfg, 'data.subset'), image_size=cfg.image_size,
                      normalization=cfg.normalization,
                      augment=config_lib.field(cfg, 'data.augment'))
