"""The 19 VTAB-1k tasks on TFDS (task_adaptation split strings, label transforms, class counts).

Split names every task offers (docs/specs/01-vit-vtab-vpt.md; nX = X% of the TFDS train size,
integer division):
  'train800', 'val200', 'train800val200' (= train800 + val200, the default training split),
  'train1000' (official VTAB: first 1000 of trainval; every task's trainval starts with its TFDS
  train split, which holds more than 1000 examples, so it is 'train[:1000]'), and 'test'.
Files are read with shuffle_files=False, so a split is a fixed list of examples per TFDS version.
Images: decoded as PIL does (preprocess.decode_image) -> preprocess.resize_crop -> [0, 1] ->
preprocess.normalize(config.normalization).
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_jax.data import pipeline
from prompt_jax.data import preprocess
from prompt_jax.data import registry
from prompt_jax.util import config as config_lib
from prompt_jax.data import tasks

LabelFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]


class DatasetNotFoundError(FileNotFoundError):
  """The TFDS dataset (at the pinned version) is not prepared under data_dir."""


# ---- label transforms: raw TFDS feature dict -> int64 scalar ---------------------------------

def _largest_below(thresholds, value) -> tf.Tensor:
  """Largest i with thresholds[i] < value (thresholds ascending)."""
  thr = tf.constant(thresholds, tf.float32)
  return tf.reduce_sum(tf.cast(thr < tf.cast(value, tf.float32), tf.int64)) - 1


def label_identity(ex) -> tf.Tensor:
  return tf.cast(ex['label'], tf.int64)


def label_clevr_count(ex) -> tf.Tensor:
  """Number of objects − 3 (scenes hold 3..10 objects -> 8 classes)."""
  return tf.cast(tf.shape(ex['objects']['size'])[0], tf.int64) - 3


CLEVR_DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)


def label_clevr_dist(ex) -> tf.Tensor:
  """Bin of the closest object's depth: pixel_coords[:, 2] (6 classes)."""
  d = tf.reduce_min(ex['objects']['pixel_coords'][:, 2])
  return _largest_below(CLEVR_DIST_THRESHOLDS, d)


def label_kitti_dist(ex) -> tf.Tensor:
  """Bin of the closest vehicle's z (type < 3: Car, Van, Truck); no vehicle counts as 1000."""
  objects = ex['objects']
  z = tf.boolean_mask(tf.cast(objects['location'][:, 2], tf.float32), objects['type'] < 3)
  d = tf.reduce_min(tf.concat([z, [1000.0]], 0))
  return _largest_below(KITTI_THRESHOLDS, d)


def _binned(key: str, original_classes: int, bins: int = 16) -> LabelFn:
  def fn(ex):
    v = tf.cast(ex[key], tf.float32)
    return tf.cast(tf.math.floor(v / (original_classes / bins)), tf.int64)
  fn.__name__ = f'label_{key}_binned'
  return fn


label_dsprites_loc = _binned('label_x_position', 32)
label_dsprites_ori = _binned('label_orientation', 40)


def _attr(key: str) -> LabelFn:
  def fn(ex):
    return tf.cast(ex[key], tf.int64)
  fn.__name__ = f'label_{key}'
  return fn


# ---- task table -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
  """One VTAB-1k task. val200/test are split strings or functions of the TFDS train size."""

  tfds_name: str  # name[/config]:version (pinned)
  val200: str | Callable[[int], str]
  test: str | Callable[[int], str]
  label_fn: LabelFn = label_identity
  image_scale: float = 1.0  # dsprites stores 0/1 pixels

  def split_strings(self, train_size: int) -> dict[str, str]:
    """Exact TFDS split strings; `train_size` = examples in the TFDS 'train' split."""
    val = self.val200(train_size) if callable(self.val200) else self.val200
    test = self.test(train_size) if callable(self.test) else self.test
    return {'train800': 'train[:800]', 'val200': val, 'train800val200': f'train[:800]+{val}',
            'train1000': 'train[:1000]', 'test': test}


def _train_at(pct: int) -> Callable[[int], str]:
  def fn(n):
    start = n * pct // 100
    return f'train[{start}:{start + 200}]'
  return fn


def _train_from(pct: int, pct2: int = 0) -> Callable[[int], str]:
  def fn(n):
    return f'train[{n * pct // 100 + n * pct2 // 100}:]'
  return fn


TASKS: dict[str, Task] = {
    'caltech101': Task('caltech101:3.*.*', _train_at(90), 'test'),
    'cifar100': Task('cifar100:3.*.*', _train_at(90), 'test'),
    'dtd': Task('dtd:3.*.*', 'validation[:200]', 'test'),
    'oxford_flowers102': Task('oxford_flowers102:2.*.*', 'validation[:200]', 'test'),
    # VTAB/VPT pinned 3.*.*; TFDS 4.9 only builds 4.0.0 (override with config.data.tfds_version).
    'oxford_iiit_pet': Task('oxford_iiit_pet:4.*.*', _train_at(80), 'test'),
    'svhn': Task('svhn_cropped:3.*.*', _train_at(90), 'test'),
    'sun397': Task('sun397/tfds:4.*.*', 'validation[:200]', 'test'),
    'patch_camelyon': Task('patch_camelyon:2.*.*', 'validation[:200]', 'test'),
    'eurosat': Task('eurosat/rgb:2.*.*', _train_at(60), _train_from(60, 20)),
    'resisc45': Task('resisc45:3.*.*', _train_at(60), _train_from(60, 20)),
    'diabetic_retinopathy': Task('diabetic_retinopathy_detection/btgraham-300:3.*.*',
                                 'validation[:200]', 'test'),
    'dmlab': Task('dmlab:2.0.1', 'validation[:200]', 'test'),
    'kitti': Task('kitti:3.2.0', 'validation[:200]', 'test', label_kitti_dist),  # VTAB: 3.1.0
    'clevr_count': Task('clevr:3.*.*', _train_at(90), 'validation', label_clevr_count),
    'clevr_dist': Task('clevr:3.*.*', _train_at(90), 'validation', label_clevr_dist),
    'dsprites_loc': Task('dsprites:2.*.*', _train_at(80), _train_from(90),
                         label_dsprites_loc, image_scale=255.0),
    'dsprites_ori': Task('dsprites:2.*.*', _train_at(80), _train_from(90),
                         label_dsprites_ori, image_scale=255.0),
    'smallnorb_azi': Task('smallnorb:2.*.*', 'test[:200]', 'test[50%:]',
                          _attr('label_azimuth')),
    'smallnorb_ele': Task('smallnorb:2.*.*', 'test[:200]', 'test[50%:]',
                          _attr('label_elevation')),
}
# Metadata (classes, groups, aliases) lives in data/tasks.py.
assert set(TASKS) == set(tasks.VTAB_TASKS)
assert all(t.tfds_name == tasks.TFDS_NAMES[k] for k, t in TASKS.items())


# ---- reading ----------------------------------------------------------------------------------

def split_size(spec: str, sizes: Mapping[str, int]) -> int:
  """Examples selected by a TFDS split string such as 'train[:800]+test[50%:]' (TFDS rounding)."""
  infos = {k: types.SimpleNamespace(num_examples=v) for k, v in sizes.items()}
  total = 0
  for a in tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos):
    n = sizes[a.splitname]
    lo = 0 if a.from_ is None else min(a.from_, n)
    hi = n if a.to is None else min(a.to, n)
    total += max(hi - lo, 0)
  return total


def _not_found(task: str, tfds_name: str, data_dir: str | None) -> DatasetNotFoundError:
  where = data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
  return DatasetNotFoundError(
      f'VTAB task {task!r} needs TFDS dataset {tfds_name!r}, which is not prepared under '
      f'data_dir={where!r}. Prepare it with:\n  python -m prompt_jax.data.prepare '
      f'--tasks={task} --data_dir={where}')


def base_split_sizes(builder: tfds.core.DatasetBuilder) -> dict[str, int]:
  """Sizes of the prepared TFDS splits, e.g. {'train': 50000, 'test': 10000}."""
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    raise FileNotFoundError(builder.data_dir)
  return {k: int(v.num_examples) for k, v in builder.info.splits.items()}


@tfds.decode.make_decoder()
def _decode_like_pil(serialized: tf.Tensor, feature: tfds.features.Image) -> tf.Tensor:
  return preprocess.decode_image(serialized, channels=feature.shape[-1])


# 'image' is decoded as PIL does (this matters for the tasks TFDS stores as JPEG, e.g.
# oxford_iiit_pet and dmlab).
DECODERS = {'image': _decode_like_pil()}


def as_dataset(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
  """The one TFDS read (tests wrap it to record split strings), with DECODERS."""
  return builder.as_dataset(split=split, shuffle_files=False, decoders=DECODERS)


class VtabSource(pipeline.TfSource):
  """Source over one VTAB-1k task; `split_strings` holds the exact TFDS strings per split name."""

  def __init__(self, task: str, data_dir: str | None, opts: pipeline.ImageOptions, *,
               tfds_version: str | None = None, **kw):
    self.task_name = tasks.canonical_task(task)
    t = TASKS[self.task_name]
    name = t.tfds_name if not tfds_version else f"{t.tfds_name.split(':')[0]}:{tfds_version}"
    self.tfds_name = name
    try:
      self.builder = tfds.builder(name, data_dir=data_dir)
      sizes = base_split_sizes(self.builder)
    except (FileNotFoundError, AssertionError, tfds.core.registered.DatasetNotFoundError) as e:
      raise _not_found(self.task_name, name, data_dir) from e
    if 'train' not in sizes:
      raise _not_found(self.task_name, name, data_dir)
    self.split_strings = t.split_strings(sizes['train'])
    splits = {k: split_size(v, sizes) for k, v in self.split_strings.items()}

    def read(split: str) -> tf.data.Dataset:
      ds = as_dataset(self.builder, self.split_strings[split])
      scale = t.image_scale

      def fn(ex):
        return {'image': tf.cast(ex['image'], tf.float32) * scale, 'label': t.label_fn(ex)}
      return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    super().__init__(read, splits, tasks.NUM_CLASSES[self.task_name], opts, **kw)

  def input_files(self, split: str) -> list[str]:
    """Every file of the prepared TFDS dataset (dataset_info.json, the record shards)."""
    del split
    return tf.io.gfile.glob(os.path.join(self.builder.data_dir, '*'))

  def identity_extra(self, split: str) -> Any:
    return [self.tfds_name, self.split_strings[split]]


def source_kwargs(cfg: ml_collections.ConfigDict) -> dict:
  """Sampler/augmentation/caching fields of config.data shared by vtab and folder."""
  return dict(sampler=config_lib.field(cfg, 'data.sampler'),
              images_per_class=int(config_lib.field(cfg, 'data.images_per_class')),
              augment=bool(config_lib.field(cfg, 'data.augment')),
              cache_train=bool(config_lib.field(cfg, 'data.cache_train')))


@registry.register('vtab')
def _factory(cfg: ml_collections.ConfigDict) -> VtabSource:
  return VtabSource(cfg.task, config_lib.field(cfg, 'data.data_dir'),
                    pipeline.ImageOptions.from_config(cfg),
                    tfds_version=config_lib.field(cfg, 'data.tfds_version'), **source_kwargs(cfg))
