"""Position-embedding resize for another image size (CLS entry kept, grid resized)."""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def resize_posemb(posemb: np.ndarray, num_tokens: int, *, method: str = 'linear',
                  num_prefix: int = 1) -> np.ndarray:
  """posemb [1, prefix + g², D] -> [1, num_tokens, D] (prefix + g'² grid).

  method: 'linear' (the original ViT code: spline order-1 zoom) or 'bicubic' (timm).
  """
  if posemb.shape[1] == num_tokens:
    return posemb
  prefix, grid = posemb[:, :num_prefix], posemb[0, num_prefix:]
  g_old = int(round(np.sqrt(len(grid))))
  g_new = int(round(np.sqrt(num_tokens - num_prefix)))
  if g_old ** 2 != len(grid) or g_new ** 2 != num_tokens - num_prefix:
    raise ValueError(f'cannot resize position embedding {posemb.shape} to {num_tokens} tokens: '
                     'grids must be square')
  grid = grid.reshape(g_old, g_old, -1)
  if method == 'linear':
    zoom = (g_new / g_old, g_new / g_old, 1)
    grid = scipy.ndimage.zoom(grid, zoom, order=1)
  elif method == 'bicubic':
    import jax
    grid = np.asarray(jax.image.resize(grid, (g_new, g_new, grid.shape[-1]), 'bicubic'))
  else:
    raise ValueError(f'unknown posemb_resize {method!r}; known: linear, bicubic')
  grid = grid.reshape(1, g_new * g_new, -1).astype(posemb.dtype)
  return np.concatenate([prefix, grid], axis=1)
