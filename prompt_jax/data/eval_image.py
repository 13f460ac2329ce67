"""Images as the evaluation pipeline of a config's data source gives them to the model, from uint8
arrays decoded from files: the path that prediction and the Python API share with the sources.

  images = preprocess(uint8_images, config)      # float32 [B, S, S, 3], normalised
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from prompt_jax.data import fewshot
from prompt_jax.data import preprocess as preprocess_lib
from prompt_jax.util import config_files


def _tf_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  from prompt_jax.data import pipeline  # imports TensorFlow: only when a TF source's image is asked
  o = pipeline.ImageOptions.from_config(data)
  return np.asarray(preprocess_lib.resize_crop(image, o.image_size, o.resize, o.crop_pct,
                                               o.resize_to, o.antialias))


def _fewshot_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  from PIL import Image
  rgb = Image.fromarray(image if image.shape[-1] == 3 else image[..., 0]).convert('RGB')
  return np.asarray(fewshot.resize_center_crop(rgb, int(data.image_size)), np.float32) / 255.0


def _digits_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  import jax
  x = image.astype(np.float32)[..., :1] / 255.0
  s = int(data.image_size)
  x = np.asarray(jax.image.resize(x, (s, s, 1), 'bilinear'))
  return np.clip(np.repeat(x, 3, axis=-1), 0.0, 1.0)


# data source -> its evaluation image path: uint8 [H, W, C] -> float32 [S, S, 3] in [0, 1]
EVAL_IMAGE = {'vtab': _tf_image, 'folder': _tf_image, 'fewshot': _fewshot_image,
              'digits': _digits_image}


def preprocess(images: Any, config: ml_collections.ConfigDict | str, *,
               image_size: int | None = None) -> np.ndarray:
  """Images as the evaluation pipeline of `config.data.source` gives them to the model.

  images: uint8 [H, W, C] or [B, H, W, C], or a sequence of uint8 [H, W, C] of any sizes
  (C = 1 or 3; PIL images work through np.asarray) in [0, 255], as decoded from image files.
  config: a run's config (`load_tuned` returns it), its `data` section, or a config file spec
  ('configs/vpt_vtab.py:task=dtd'). Uses data.source, image_size, resize, resize_to, crop_pct,
  antialias and normalization, as the source does; no augmentation. image_size: the model's input
  side S when it differs from the config's (the `image_size` given to `create_model`); default
  data.image_size. Returns float32 [S, S, 3] or [B, S, S, 3].
  """
  if isinstance(config, str):
    config = config_files.load(config)
  data = config.data if 'data' in config else config
  if image_size is not None and int(image_size) != int(data.image_size):
    data = ml_collections.ConfigDict(data.to_dict())
    data.image_size = int(image_size)
  if data.source not in EVAL_IMAGE:
    raise ValueError(f'preprocess knows the image paths of sources {sorted(EVAL_IMAGE)}, not '
                     f'{data.source!r}')
  single = isinstance(images, np.ndarray) and images.ndim == 3
  batch = [images] if single else list(images)
  out = []
  for image in batch:
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[..., None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
      raise ValueError(
          f'preprocess takes uint8 [H, W, 1 or 3] images in [0, 255] (as decoded from files); '
          f'got {image.dtype} {image.shape}. Float images are ambiguous ([0, 1] or [0, 255]): '
          'convert with (x * 255).round().astype(np.uint8) or x.astype(np.uint8).')
    x = EVAL_IMAGE[data.source](image, data)
    out.append(preprocess_lib.normalize(x, data.normalization).astype(np.float32))
  return out[0] if single else np.stack(out)

