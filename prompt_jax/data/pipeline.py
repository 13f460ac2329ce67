"""A Source over tf.data datasets of {'image': uint8[H, W, C], 'label': int}, shared by vtab/folder.

Eval passes (shuffle_seed None) stream through tf.data in file order, batched to the GLOBAL batch
size, the last batch padded with mask False. Training passes (shuffle_seed set) load the split
(≤1000 images for VTAB-1k) as preprocessed arrays, order them in numpy (a seeded permutation, or
the class-balanced sampler), so the order depends only on shuffle_seed; `cache_train` keeps those
arrays between passes. Multi-host: every host builds the same global batch and keeps its
contiguous rows (`source.host_rows`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_jax.data import preprocess
from prompt_jax.data import sampler as sampler_lib
from prompt_jax.data import split_cache
from prompt_jax.util import config as config_lib
from prompt_jax.data.source import Batch, batch_indices, host_rows


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """How every image is prepared (mirrors the config.data fields of the same names)."""

  image_size: int = 224
  resize: str = 'bilinear'
  crop_pct: float = 1.0
  normalization: str = 'minus_one_to_one'
  resize_to: str = 'square'
  antialias: bool = False

  @classmethod
  def from_config(cls, cfg) -> ImageOptions:
    def field(key):
      return config_lib.field(cfg, key)

    return cls(image_size=int(cfg.image_size), resize=field('data.resize'),
               crop_pct=float(field('data.crop_pct')), normalization=field('data.normalization'),
               resize_to=field('data.resize_to'), antialias=bool(field('data.antialias')))


def prepare_example(ex: dict, opts: ImageOptions) -> dict:
  """{'image': [H, W, C] in [0, 255], 'label'} -> {'image': float32[S, S, 3] in [0, 1], 'label'}."""
  image = preprocess.resize_crop(ex['image'], opts.image_size, opts.resize, opts.crop_pct,
                                 opts.resize_to, opts.antialias)
  return {'image': image, 'label': tf.cast(ex['label'], tf.int32)}


def random_resized_crop_flip(images: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
  """FGVC augmentation on a batch float32[B, S, S, 3]: crop area 8-100%, ratio 3/4-4/3, h-flip."""
  rng = np.random.default_rng(seed)
  b, s = images.shape[0], images.shape[1]
  area = rng.uniform(0.08, 1.0, b)
  ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), b))
  w = np.clip(np.sqrt(area * ratio), 0.0, 1.0)
  h = np.clip(np.sqrt(area / ratio), 0.0, 1.0)
  y0 = rng.uniform(0.0, 1.0, b) * (1.0 - h)
  x0 = rng.uniform(0.0, 1.0, b) * (1.0 - w)
  boxes = np.stack([y0, x0, y0 + h, x0 + w], -1).astype(np.float32)
  out = tf.image.crop_and_resize(images, boxes, np.arange(b, dtype=np.int32), (s, s)).numpy()
  flip = rng.random(b) < 0.5
  out[flip] = out[flip, :, ::-1]
  return out


class TfSource:
  """Source protocol over `read(split) -> tf.data.Dataset` (see the module docstring)."""

  def __init__(self, read: Callable[[str], tf.data.Dataset], splits: dict[str, int],
               num_classes: int, opts: ImageOptions, *, sampler: str = 'shuffle',
               images_per_class: int = 2, augment: bool = False, cache_train: bool = True):
    if sampler not in ('shuffle', 'class_balanced'):
      raise ValueError(f"sampler must be 'shuffle' or 'class_balanced', got {sampler!r}")
    self._read = read
    self.splits = dict(splits)
    self.num_classes = num_classes
    self.opts = opts
    self.sampler = sampler
    self.images_per_class = images_per_class
    self.augment = augment
    self.cache_train = cache_train
    self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    self._decoded: dict[tuple[str, np.dtype], tuple[np.ndarray, np.ndarray]] = {}
    self.decodes: dict[str, int] = {}  # split -> passes that decoded it (tests count them)

  def _dataset(self, split: str) -> tf.data.Dataset:
    if split not in self.splits:
      raise KeyError(f'split {split!r} not in {sorted(self.splits)}')
    return self._read(split).map(lambda ex: prepare_example(ex, self.opts),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def input_files(self, split: str) -> list[str]:
    """The files `split` is read from (vtab, folder override it); none: in-memory data."""
    del split
    return []

  def identity(self, split: str) -> str:
    """`split_cache.files_identity` of the split's files: keys the on-disk decoded cache."""
    return split_cache.files_identity(self.input_files(split), self.identity_extra(split))

  def identity_extra(self, split: str) -> Any:
    """What else than file stats determines `split` (folder: its labels)."""
    del split
    return None

  def decoded(self, split: str, dtype=np.float32, path: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The whole split resized, before normalisation, decoded once per source: (images
    [N, S, S, 3], labels int32[N]); float32 in [0, 1], or uint8 = round(255 x). With `path` (a
    local .npy) the images live in a memmap there (`split_cache`). Kept for later calls."""
    dtype = np.dtype(dtype)
    if (split, dtype) in self._decoded:
      return self._decoded[(split, dtype)]
    if dtype == np.float32 and split in self._cache:
      return self._cache[split]
    s = self.opts.image_size

    def batches():
      self.decodes[split] = self.decodes.get(split, 0) + 1
      for b in tfds.as_numpy(self._dataset(split).batch(256)):
        yield b['image'], b['label']
    out = split_cache.fill(batches(), self.splits[split], (s, s, 3), dtype, path)
    self._decoded[(split, dtype)] = out
    return out

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole split in [0, 1] before normalisation: (float32[N, S, S, 3], int32[N])."""
    if split in self._cache:
      return self._cache[split]
    if (split, np.dtype(np.float32)) in self._decoded:
      return self._decoded[(split, np.dtype(np.float32))]
    images, labels = [], []
    self.decodes[split] = self.decodes.get(split, 0) + 1
    for b in tfds.as_numpy(self._dataset(split).batch(256)):
      images.append(b['image'])
      labels.append(b['label'])
    s = self.opts.image_size
    out = (np.concatenate(images) if images else np.zeros((0, s, s, 3), np.float32),
           np.concatenate(labels).astype(np.int32) if labels else np.zeros(0, np.int32))
    if self.cache_train:
      self._cache[split] = out
    return out

  def train_indices(self, labels: np.ndarray, batch_size: int, shuffle_seed: int,
                    drop_remainder: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One training pass as (indices[batch_size], mask[batch_size]) into the split: a seeded
    permutation, or the class-balanced order (`sampler`)."""
    if self.sampler == 'class_balanced':
      order = sampler_lib.class_balanced_order(labels, batch_size, self.images_per_class,
                                               shuffle_seed)
      return ((order[i:i + batch_size], np.ones(batch_size, bool))
              for i in range(0, len(order), batch_size))
    return batch_indices(len(labels), batch_size, shuffle_seed=shuffle_seed,
                         drop_remainder=drop_remainder)

  def _finish(self, images: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> Batch:
    images = preprocess.normalize(images, self.opts.normalization).astype(np.float32)
    return {'image': images, 'label': labels.astype(np.int32), 'mask': mask}

  def iterate(self, split: str, batch_size: int, *, shuffle_seed: int | None = None,
              drop_remainder: bool = False, process_index: int = 0,
              process_count: int = 1) -> Iterator[Batch]:
    """One pass over `split`; global batches of `batch_size`, this host's rows only."""
    if shuffle_seed is None:
      yield from self._stream(split, batch_size, drop_remainder, process_index, process_count)
      return
    images, labels = self.load(split)
    batches = self.train_indices(labels, batch_size, shuffle_seed, drop_remainder)
    for step, (idx, mask) in enumerate(batches):
      x = images[idx]
      if self.augment:  # seeded by (shuffle_seed, step): resumes stay exact
        x = random_resized_crop_flip(x, (shuffle_seed, step))
      yield host_rows(self._finish(x, labels[idx], mask), process_index, process_count)

  def _stream(self, split, batch_size, drop_remainder, process_index, process_count):
    self.decodes[split] = self.decodes.get(split, 0) + 1
    ds = self._dataset(split).batch(batch_size, drop_remainder=drop_remainder)
    for b in tfds.as_numpy(ds.prefetch(2)):
      n = len(b['label'])
      mask = np.ones(batch_size, bool)
      images, labels = b['image'], b['label']
      if n < batch_size:  # pad the last eval batch so shapes stay static
        mask[n:] = False
        pad = batch_size - n
        images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
      yield host_rows(self._finish(images, labels, mask), process_index, process_count)
