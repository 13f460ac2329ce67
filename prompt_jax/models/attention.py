"""Attention variants behind one seam: standard joint softmax (with masks), SHIP's decoupled form.

Shapes: q, k, v are [B, T, H, Dh]; scores are [B, H, Tq, Tk]; outputs are [B, T, H, Dh] (before the
output projection). `AttentionSpec` is static (hashable) so the choice is fixed at compile time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

Array = Any


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """How one block attends.

  kind: 'joint' (one softmax over all keys) or 'decoupled' (SHIP, see `decoupled_attention`).
  num_image_tokens: decoupled only: tokens [0, n) are CLS+patches, the rest are prompts.
  prompt_weight: decoupled only: weight of the image->prompt branch (0.1 in SHIP).
  prompt_queries: decoupled only: whether prompt tokens issue queries (joint softmax over all keys);
    False passes the (normed) prompt itself through as its attention output.
  drop_prompts: decoupled only: the block keeps only the image tokens [:n] after attention, so the
    prompt tokens' residual and MLP are skipped (exact for CLS when nothing reads the prompt
    outputs,
    e.g. SHIP's last block at inference).
  """

  kind: str = 'joint'
  num_image_tokens: int = 0
  prompt_weight: float = 0.1
  prompt_queries: bool = False
  drop_prompts: bool = False


JOINT = AttentionSpec()


def _heads_first(x: Array) -> Array:
  """[B, T, H, Dh] -> [B, H, T, Dh]: batch dims leading, which XLA:CPU's dot runs faster."""
  return jnp.swapaxes(x, 1, 2)


def attention_scores(q: Array, k: Array) -> Array:
  """Pre-softmax scores q·kᵀ/sqrt(Dh): [B, Tq, H, Dh] x [B, Tk, H, Dh] -> [B, H, Tq, Tk]."""
  depth = q.shape[-1]
  q = q / jnp.sqrt(depth).astype(q.dtype)
  return jnp.einsum('bhqd,bhkd->bhqk', _heads_first(q), _heads_first(k))


def _weighted_values(weights: Array, v: Array) -> Array:
  """weights [B, H, Tq, Tk], v [B, Tk, H, Dh] -> [B, Tq, H, Dh]."""
  return _heads_first(jnp.einsum('bhqk,bhkd->bhqd', weights, _heads_first(v)))


def _softmax(logits: Array, dtype: Any) -> Array:
  """Softmax over the last axis computed in float32 (bf16-safe), cast back to `dtype`."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)


def joint_attention(q: Array, k: Array, v: Array, mask: Array | None = None
                    ) -> tuple[Array, Array]:
  """Softmax attention. mask: bool, broadcastable to [B, H, Tq, Tk], True = may attend.

  Returns (out [B, Tq, H, Dh], pre-softmax scores [B, H, Tq, Tk] before masking).
  """
  scores = attention_scores(q, k)
  logits = scores
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  weights = _softmax(logits, v.dtype)
  return _weighted_values(weights, v), scores


def decoupled_attention(q: Array, k: Array, v: Array, prompt_in: Array, spec: AttentionSpec
                        ) -> tuple[Array, Array]:
  """SHIP decoupled attention (spec 02 §5).

  Image tokens z = [:n], prompt tokens p = [n:]:
    z' = (1-w)·softmax(Q_z K_zᵀ/√d) V_z + w·softmax(Q_z K_pᵀ/√d) V_p   (two separate softmaxes)
    p' = joint softmax over [K_z; K_p] if spec.prompt_queries else prompt_in (the normed prompt).
  prompt_in: [B, T-n, H, Dh], the block's normed input at prompt positions split into heads.
  Returns (out [B, T, H, Dh], CLS-row-only scores [B, H, 1, T] pre-softmax; other rows are not
  formed).
  With no prompt tokens this is exactly the joint attention of the image tokens.
  """
  n = spec.num_image_tokens
  qz, kz, vz, kp, vp = q[:, :n], k[:, :n], v[:, :n], k[:, n:], v[:, n:]
  s_zz = attention_scores(qz, kz)
  out_z = _weighted_values(_softmax(s_zz, vz.dtype), vz)
  if k.shape[1] == n:
    return out_z, s_zz[:, :, :1]
  s_zp = attention_scores(qz, kp)
  out_zp = _weighted_values(_softmax(s_zp, vp.dtype), vp)
  out_z = (1.0 - spec.prompt_weight) * out_z + spec.prompt_weight * out_zp
  if spec.prompt_queries:
    out_p, _ = joint_attention(q[:, n:], k, v)
  else:
    out_p = prompt_in
  cls_scores = jnp.concatenate([s_zz[:, :, :1], s_zp[:, :, :1]], axis=-1)
  return jnp.concatenate([out_z, out_p], axis=1), cls_scores
