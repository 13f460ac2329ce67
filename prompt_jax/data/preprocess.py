"""Value-range normalisation shared by every source (a config field, never a constant).

Input: float images in [0, 1], shape [..., 3]. Modes:
  'minus_one_to_one' (Google ViT, SHIP: same as mean=std=0.5), 'zero_one', 'imagenet' (mean/std),
  'clip' (CLIP mean/std), 'half' (mean=std=0.5, identical to minus_one_to_one).
"""

from __future__ import annotations

import numpy as np

MEAN_STD = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'clip': ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    'half': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    'minus_one_to_one': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    'zero_one': ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def normalize(images01, mode: str):
  """images01: [..., 3] in [0, 1] (numpy or tf/jax array) -> normalised float32, same shape."""
  if mode not in MEAN_STD:
    raise KeyError(f'unknown normalisation {mode!r}; known: {sorted(MEAN_STD)}')
  mean, std = MEAN_STD[mode]
  return (images01 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def resize_crop(image, image_size: int, resize: str = 'bilinear', crop_pct: float = 1.0):
  """The one image path shared by every tf source (TFDS and folder give identical arrays).

  image: uint8/float tf tensor [H, W, C] in [0, 255], C in {1, 3} -> float32 [S, S, 3] in [0, 1].
  crop_pct == 1.0: plain resize to S×S (VTAB: no aspect keep, no crop).
  crop_pct < 1.0: resize to round(S / crop_pct) square, then centre-crop S×S (SHIP / DA-VPT).
  """
  import tensorflow as tf
  if resize not in ('bilinear', 'bicubic'):
    raise ValueError(f"resize must be 'bilinear' or 'bicubic', got {resize!r}")
  image = tf.cast(image, tf.float32)
  if image.shape[-1] == 1:  # greyscale datasets are tiled to RGB
    image = tf.tile(image, [1, 1, 3])
  big = int(round(image_size / crop_pct)) if crop_pct < 1.0 else image_size
  image = tf.image.resize(image, (big, big), method=resize, antialias=False)
  if big != image_size:
    off = (big - image_size) // 2
    image = image[off:off + image_size, off:off + image_size]
  return tf.clip_by_value(image / 255.0, 0.0, 1.0)
