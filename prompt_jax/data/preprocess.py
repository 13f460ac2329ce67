"""The image path shared by every source: decoding, resizing / cropping, value-range normalisation.

`decode_image` decodes like PIL (`read_image`: a file, for prediction); `resize_crop` resizes
(square or shorter side) and centre-crops.
`normalize` (a config field, never a constant): float images in [0, 1], shape [..., 3]. Modes:
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


def decode_image(contents, channels: int = 3):
  """Encoded image bytes (tf string scalar) -> uint8 tf tensor [H, W, channels], as PIL decodes it.

  JPEGs use libjpeg's accurate integer IDCT (`dct_method='INTEGER_ACCURATE'`), PIL's (and so the
  PyTorch releases') decoder; TF's default fast IDCT changes ~60% of the uint8 values, by up to
  3-4, on quality-75 files. Other formats (PNG, BMP, GIF first frame) are lossless either way.
  """
  import tensorflow as tf
  return tf.cond(
      tf.io.is_jpeg(contents),
      lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method='INTEGER_ACCURATE'),
      lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False))


class ImageError(ValueError):
  """An image file that does not decode (corrupt, truncated, or not an image)."""


def read_image(path: str) -> np.ndarray:
  """An image file -> uint8 [H, W, 3] through `decode_image`, the op the trainer's folder sources
  use, so training, evaluation and prediction see the same array (16-bit PNGs scaled to 8 bits,
  grayscale / palette / RGBA / CMYK to RGB; EXIF orientation is not applied, as in training).
  Raises ImageError naming the file when it does not decode."""
  import tensorflow as tf
  try:
    return decode_image(tf.io.read_file(path)).numpy()
  except (tf.errors.OpError, ValueError) as e:
    why = str(getattr(e, 'message', e)).splitlines()[0][:120]
    raise ImageError(f'{path}: not a decodable image ({why})') from None


def resize_crop(image, image_size: int, resize: str = 'bilinear', crop_pct: float = 1.0,
                resize_to: str = 'square', antialias: bool = False):
  """The one image path shared by every tf source (TFDS and folder give identical arrays).

  image: uint8/float tf tensor [H, W, C] in [0, 255], C in {1, 3} -> float32 [S, S, 3] in [0, 1].
  Let R = round(S / crop_pct) (R = S when crop_pct == 1.0):
    resize_to='square'        resize to R×R (aspect not kept; VTAB, crop_pct 1.0: plain resize);
    resize_to='shorter_side'  resize the shorter side to R, the longer to int(R·long/short)
                              (aspect kept; torchvision's Resize(R) on a PIL image);
  then centre-crop S×S, offsets round((size - S) / 2) half to even (torchvision's CenterCrop).
  antialias=True widens the kernel when downsampling, as PIL does (the PyTorch releases);
  False is tf.image.resize's default (the TF/VTAB pipelines).
  """
  import tensorflow as tf
  if resize not in ('bilinear', 'bicubic'):
    raise ValueError(f"resize must be 'bilinear' or 'bicubic', got {resize!r}")
  if resize_to not in ('square', 'shorter_side'):
    raise ValueError(f"resize_to must be 'square' or 'shorter_side', got {resize_to!r}")
  image = tf.cast(image, tf.float32)
  if image.shape[-1] == 1:  # greyscale datasets are tiled to RGB
    image = tf.tile(image, [1, 1, 3])
  big = int(round(image_size / crop_pct)) if crop_pct < 1.0 else image_size
  if resize_to == 'square':
    size = tf.constant([big, big], tf.int32)
  else:
    hw = tf.cast(tf.shape(image)[:2], tf.float64)
    short = tf.reduce_min(hw)
    size = tf.where(hw == short, tf.constant(big, tf.float64), tf.floor(big * hw / short))
    size = tf.cast(size, tf.int32)
  image = tf.image.resize(image, size, method=resize, antialias=antialias)
  top_left = tf.cast(tf.round(tf.cast(size - image_size, tf.float64) / 2.0), tf.int32)
  image = tf.slice(image, tf.concat([top_left, [0]], 0), [image_size, image_size, 3])
  return tf.clip_by_value(image / 255.0, 0.0, 1.0)
