"""The input transform inside the jitted step: cached pixels -> normalised, augmented float32.

  images = device_input.prepare(raw, normalization, augment_key=key_or_None)

raw: [B, S, S, 3] uint8 (0..255) or float32 in [0, 1], as `TfSource.decoded` keeps a split.
Augmentation (data.augment) is the host path's (`pipeline.random_resized_crop_flip`): per image a
crop of area U(0.08, 1) and aspect exp(U(log 3/4, log 4/3)), placed uniformly, resized back to S×S
bilinearly with `tf.image.crop_and_resize`'s sampling grid, then a horizontal flip with p = 0.5;
its randomness comes from the key the step derives from (seed, step), so a resumed run is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.data import preprocess


def to_unit(raw: jax.Array) -> jax.Array:
  """uint8 0..255 -> float32 [0, 1]; float input is returned as float32."""
  if raw.dtype == jnp.uint8:
    return raw.astype(jnp.float32) / 255.0
  return raw.astype(jnp.float32)


def normalize(images01: jax.Array, mode: str) -> jax.Array:
  """[..., 3] in [0, 1] -> (x - mean) / std of `mode` (preprocess.MEAN_STD), float32."""
  mean, std = preprocess.MEAN_STD[mode]
  return (images01 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def _axis_weights(lo: jax.Array, hi: jax.Array, size_in: int, size_out: int
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Bilinear sampling along one axis on crop_and_resize's grid: the source coordinate of output
  i is lo·(n-1) + i·(hi-lo)·(n-1)/(m-1). Returns (floor index, ceil index, weight of ceil), [m]."""
  n, m = size_in, size_out
  step = (hi - lo) * (n - 1) / (m - 1) if m > 1 else 0.0
  pos = lo * (n - 1) + jnp.arange(m, dtype=jnp.float32) * step
  if m == 1:
    pos = jnp.full((1,), 0.5 * (lo + hi) * (n - 1))
  f = jnp.floor(pos)
  w = pos - f
  i0 = jnp.clip(f, 0, n - 1).astype(jnp.int32)
  i1 = jnp.clip(f + 1, 0, n - 1).astype(jnp.int32)
  return i0, i1, w


def crop_and_resize(image: jax.Array, box: jax.Array, size: int, flip: jax.Array | bool = False
                    ) -> jax.Array:
  """image [H, W, C] float, box [y0, x0, y1, x1] in [0, 1] -> [size, size, C], bilinear
  (separable; the same values as tf.image.crop_and_resize for boxes inside the image), mirrored
  left-right when `flip` (the column samples reversed: no separate reverse pass)."""
  h, w = image.shape[:2]
  r0, r1, wr = _axis_weights(box[0], box[2], h, size)
  c0, c1, wc = _axis_weights(box[1], box[3], w, size)
  c0, c1, wc = (jnp.where(flip, v[::-1], v) for v in (c0, c1, wc))
  rows = image[r0] * (1 - wr)[:, None, None] + image[r1] * wr[:, None, None]  # [size, W, C]
  return rows[:, c0] * (1 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]


def random_boxes(key: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
  """(boxes [B, 4] as [y0, x0, y1, x1] in [0, 1], flip bool[B]) of the FGVC augmentation."""
  ka, kr, ky, kx, kf = jax.random.split(key, 5)
  area = jax.random.uniform(ka, (batch,), minval=0.08, maxval=1.0)
  ratio = jnp.exp(jax.random.uniform(kr, (batch,), minval=np.log(3 / 4), maxval=np.log(4 / 3)))
  w = jnp.clip(jnp.sqrt(area * ratio), 0.0, 1.0)
  h = jnp.clip(jnp.sqrt(area / ratio), 0.0, 1.0)
  y0 = jax.random.uniform(ky, (batch,)) * (1.0 - h)
  x0 = jax.random.uniform(kx, (batch,)) * (1.0 - w)
  flip = jax.random.uniform(kf, (batch,)) < 0.5
  return jnp.stack([y0, x0, y0 + h, x0 + w], -1), flip


def random_resized_crop_flip(images01: jax.Array, key: jax.Array) -> jax.Array:
  """[B, S, S, 3] in [0, 1] -> the same shape, each image cropped, resized back and maybe
  flipped (see the module docstring)."""
  b, s = images01.shape[0], images01.shape[1]
  boxes, flip = random_boxes(key, b)
  return jax.vmap(lambda x, box, f: crop_and_resize(x, box, s, f))(images01, boxes, flip)


def prepare(raw: jax.Array, normalization: str, augment_key: jax.Array | None = None
            ) -> jax.Array:
  """Cached pixels [B, S, S, 3] -> the model's input float32 [B, S, S, 3]: [0, 1], augmented
  when `augment_key` is given, then normalised."""
  x = to_unit(raw)
  if augment_key is not None:
    x = random_resized_crop_flip(x, augment_key)
  return normalize(x, normalization)
