"""The PyTorch releases' image transforms written with PIL alone (torchvision is not installed):
the reference of tests/data/test_preprocess.py and benchmarks/image_fidelity.py. Never imports
prompt_jax."""

from __future__ import annotations

import numpy as np
from PIL import Image


def photos() -> dict[str, np.ndarray]:
  """Real photographs shipped with scikit-learn (427×640 uint8), cut to other aspect ratios."""
  from sklearn.datasets import load_sample_images
  china, flower = load_sample_images().images
  return {'china': china, 'flower': flower, 'portrait': flower[:, 100:400],
          'small': china[::4, ::3]}


def resize_center_crop(arr: np.ndarray, size: int, crop_pct: float = 1.0,
                       shorter_side: bool = True) -> np.ndarray:
  """torchvision `Resize(R, BICUBIC)` (shorter_side) or `Resize((R, R), BICUBIC)`, R =
  round(size / crop_pct), then `CenterCrop(size)`, on a PIL image; float32 [size, size, 3] in
  [0, 1]."""
  img = Image.fromarray(arr)
  w, h = img.size
  r = int(round(size / crop_pct))
  if shorter_side:  # torchvision: the longer side is int(R * long / short)
    nw, nh = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)
  else:
    nw = nh = r
  img = img.resize((nw, nh), Image.BICUBIC)
  top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
  return np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0
