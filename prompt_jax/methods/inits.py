"""Prompt initialisers shared by the methods (flax initialisers: init(key, shape, dtype))."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def uniform(bound: float):
  """Uniform(-bound, bound)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def xavier_uniform_3d(scale: float = 1.0, stacked: bool = False):
  """torch `xavier_uniform_` on a 3-D [L, n, D] tensor, times `scale`.

  torch's fans of a 3-D tensor: fan_in = n·D, fan_out = L·D, so the bound is
  sqrt(6 / ((n + L)·D)). stacked=True: the L rows are L separate (1, n, D) tensors (SHIP's
  per-anchor prompts), fan_out = D and the bound is sqrt(6 / ((n + 1)·D)) (0.0124 at n=50, D=768).
  """
  def init(key, shape, dtype=jnp.float32):
    l, n, d = shape
    bound = scale * math.sqrt(6.0 / ((n + (1 if stacked else l)) * d))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init
