"""Pre-packed Q/K/V layouts for the frozen backbone, measured before changing the model.

  python -m benchmarks.qkv_layout [--rounds=12]

One B/16 attention layer as VPT-deep's live-token step runs it (batch 8, 197 live tokens, 50
key/value-only prompt tokens, frozen weights, gradients to the tokens only): 'separate' (the
checkpoint's query / key / value kernels, what the model runs), 'fused' (one [D, 3, H, Dh] QKV
kernel for the live tokens and a fused [D, 2, H, Dh] K/V kernel for the key/value-only tokens,
packed once outside the step) and 'fused_allcat' (one QKV product over live + kv tokens, queries
of the kv tokens discarded). Interleaved rounds; prints min / median ms per call, the CPU model and
the load. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common as bench


B, T, S, D, H = 8, 197, 50, 768, 12


def candidates() -> tuple[dict, tuple]:
  """{name: jitted grad of a one-layer attention loss w.r.t. (live, kv) tokens}, (live, kv)."""
  r = np.random.default_rng(0)
  y = jnp.asarray(r.normal(size=(B, T, D)), jnp.float32)
  ykv = jnp.asarray(r.normal(size=(B, S, D)), jnp.float32)
  w = [jnp.asarray(r.normal(size=(D, H, D // H)) * 0.02, jnp.float32) for _ in range(3)]
  bias = [jnp.zeros((H, D // H)) for _ in range(3)]
  w_qkv, b_qkv = jnp.stack(w, 1), jnp.stack(bias, 0)  # packed once, outside the step
  w_kv, b_kv = jnp.stack(w[1:], 1), jnp.stack(bias[1:], 0)
  proj = lambda a, k, b: jnp.einsum('btd,dhk->bthk', a, k) + b
  packed = lambda a, k, b: jnp.einsum('btd,dnhk->btnhk', a, k) + b

  def separate(y, ykv):
    ya = jnp.concatenate([y, ykv], 1)
    return proj(y, w[0], bias[0]), proj(ya, w[1], bias[1]), proj(ya, w[2], bias[2])

  def fused(y, ykv):
    qkv, kv = packed(y, w_qkv, b_qkv), packed(ykv, w_kv, b_kv)
    cat = lambda i: jnp.concatenate([qkv[:, :, i + 1], kv[:, :, i]], 1)
    return qkv[:, :, 0], cat(0), cat(1)

  def fused_allcat(y, ykv):
    qkv = packed(jnp.concatenate([y, ykv], 1), w_qkv, b_qkv)
    return qkv[:, :T, 0], qkv[:, :, 1], qkv[:, :, 2]

  def grad(f):
    def loss(y, ykv):
      q, k, v = f(y, ykv)
      p = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k))
      return jnp.sum(jnp.einsum('bhqk,bkhd->bqhd', p, v) ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))

  fns = {'separate': grad(separate), 'fused': grad(fused), 'fused_allcat': grad(fused_allcat)}
  return fns, (y, ykv)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=12)
  args = ap.parse_args()
  load_before = bench.load_average()
  fns, xs = candidates()
  ref = fns['separate'](*xs)
  diff = max(float(jnp.max(jnp.abs(a - b))) for f in fns.values() for a, b in zip(ref, f(*xs)))
  runs = {k: (lambda f=f: jax.block_until_ready(f(*xs))) for k, f in fns.items()}
  times = bench.time_rounds(runs, warmup=1, iters=args.rounds)
  print(json.dumps({
      'benchmark': 'qkv_layout', 'max_abs_diff_vs_separate': diff,
      'rows': {k: {'min_ms': 1e3 * min(v), 'median_ms': 1e3 * float(np.median(v))}
               for k, v in times.items()},
      'load_average_before': load_before, 'load_average_after': bench.load_average(),
      'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
