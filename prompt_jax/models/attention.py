"""Generic attention kernels: softmax attention (optionally masked) and pre-softmax scores.

Shapes: q [B, Tq, H, Dh], k and v [B, Tk, H, Dh]; outputs [B, Tq, H, Dh] (before the output
projection); scores [B, H, Tq, Tk]. Methods that read scores (SHIP's CLS row) form only the rows
they read with `attention_scores`; everything else goes through `dot_product_attention`.

Implementations (`model.attention`, resolved once by `resolve`):
  'einsum'  scores, float32 softmax and weighted values as explicit einsums, heads-first layout.
  'fused'   `jax.nn.dot_product_attention`: cuDNN's fused kernel on GPU for bf16/fp16 inputs (XLA
            otherwise; on CPU it is XLA's own lowering of the same math).
  'auto'    'fused' on GPU; on CPU the faster of the two measured by `benchmarks.train_step
            --attention=...` (CPU_DEFAULT; docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = Any
IMPLEMENTATIONS = ('auto', 'einsum', 'fused')
CPU_DEFAULT = 'einsum'


def resolve(impl: str) -> str:
  """'auto' -> 'fused' on an accelerator, CPU_DEFAULT on CPU; 'einsum' / 'fused' unchanged."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'unknown attention implementation {impl!r} (config model.attention); '
                     f'known: {IMPLEMENTATIONS}')
  if impl != 'auto':
    return impl
  return CPU_DEFAULT if jax.default_backend() == 'cpu' else 'fused'


def _heads_first(x: Array) -> Array:
  """[B, T, H, Dh] -> [B, H, T, Dh]: batch dims leading, which XLA:CPU's dot runs faster."""
  return jnp.swapaxes(x, 1, 2)


def attention_scores(q: Array, k: Array) -> Array:
  """Pre-softmax scores q·kᵀ/sqrt(Dh): [B, Tq, H, Dh] x [B, Tk, H, Dh] -> [B, H, Tq, Tk]."""
  depth = q.shape[-1]
  q = q / jnp.sqrt(depth).astype(q.dtype)
  return jnp.einsum('bhqd,bhkd->bhqk', _heads_first(q), _heads_first(k))


def _einsum_attention(q: Array, k: Array, v: Array, mask: Array | None) -> Array:
  logits = attention_scores(q, k).astype(jnp.float32)  # softmax in float32 (bf16-safe)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return _heads_first(jnp.einsum('bhqk,bhkd->bhqd', weights, _heads_first(v)))


def _fused_attention(q: Array, k: Array, v: Array, mask: Array | None) -> Array:
  if mask is not None:  # jax wants 4-D: [B or 1, H or 1, Tq, Tk]
    mask = jnp.reshape(mask, (1,) * (4 - mask.ndim) + mask.shape)
  if jax.default_backend() == 'gpu' and q.dtype in (jnp.bfloat16, jnp.float16):
    try:  # cuDNN checks its constraints (head dim, dtype, mask) while tracing
      return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation='cudnn')
    except (NotImplementedError, ValueError, RuntimeError):
      pass
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation='xla')


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array | None = None,
                          impl: str = 'auto') -> Array:
  """softmax(q·kᵀ/sqrt(Dh)) v. mask: bool broadcastable to [B, H, Tq, Tk], True = may attend.

  q [B, Tq, H, Dh], k / v [B, Tk, H, Dh] -> [B, Tq, H, Dh]. The softmax runs in float32.
  """
  if resolve(impl) == 'einsum':
    return _einsum_attention(q, k, v, mask)
  return _fused_attention(q, k, v, mask)
