"""Proxy-based metric-learning losses over class proxies (DA-VPT's prompt guidance,
docs/specs/03-davpt.md): Proxy Anchor and Proxy NCA with a scaled cosine similarity.

  loss = proxy_anchor_loss(z [B, E], proxies [P, E], labels int[B], mask bool[B])
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prompt_jax.methods import base

Array = Any


def _cos(z: Array, p: Array) -> Array:
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  p = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
  return z @ p.T


def _log1p_sum_exp(a: Array, m: Array) -> Array:
  """log(1 + Σ_i m_i·exp(a_i)) over axis 0, stable. a, m: [B, P] -> [P]."""
  a = jnp.where(m, a, -jnp.inf)
  a = jnp.concatenate([jnp.zeros((1, a.shape[1]), a.dtype), a], axis=0)
  return jax.nn.logsumexp(a, axis=0)


def proxy_anchor_loss(z: Array, proxies: Array, labels: Array, mask: Array, *, alpha: float = 32.0,
                      delta_pos: float = 0.1, delta_neg: float = -0.1, scale: float = 5.0) -> Array:
  """Proxy-anchor loss (docs/specs/03-davpt.md). z: [B, E], proxies: [P, E], labels int[B] in
  [0, P), mask bool[B].

  Proxies with no positive in the batch add 0 to the positive sum but still count in the 1/P.
  """
  s = scale * _cos(z.astype(jnp.float32), proxies.astype(jnp.float32))      # [B, P]
  onehot = jax.nn.one_hot(labels, proxies.shape[0], dtype=bool)
  pos = onehot & mask[:, None]
  neg = ~onehot & mask[:, None]
  lp = _log1p_sum_exp(-alpha * (s - delta_pos), pos)
  ln = _log1p_sum_exp(alpha * (s - delta_neg), neg)
  return lp.mean() + ln.mean()


def proxy_nca_loss(z: Array, proxies: Array, labels: Array, mask: Array, *, scale: float = 5.0,
                   **unused) -> Array:
  """ProxyNCA with scaled cosine: mean_i [−s_{i,y} + logsumexp_{k≠y} s_ik]."""
  del unused
  s = scale * _cos(z.astype(jnp.float32), proxies.astype(jnp.float32))
  onehot = jax.nn.one_hot(labels, proxies.shape[0], dtype=bool)
  pos = (s * onehot).sum(1)
  neg = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, s), axis=1)
  return base.masked_mean(neg - pos, mask)
