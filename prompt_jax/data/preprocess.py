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
  """images01: [..., 3] in [0, 1] (numpy or tf/jax array) -> normalised float32 of the same shape."""
  if mode not in MEAN_STD:
    raise KeyError(f'unknown normalisation {mode!r}; known: {sorted(MEAN_STD)}')
  mean, std = MEAN_STD[mode]
  return (images01 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
