"""The matmuls of one ViT train step, timed in XLA (jit) and in PyTorch on the same inputs.

  python -m benchmarks.matmul [--variant=B/16 --batch=8 --tokens=197 --prompts=50 --iters=10]
      [--dtype=bfloat16]

One row per GEMM shape of a block (the projections, the MLP, their backward-pass transposes, the
attention score / value matmuls): GFLOP/s of a jitted `jnp.matmul` and of `torch.matmul`, timed
round-robin (`bench.time_interleaved`) so that a shared machine's load hits both alike. This is
where a gap between our train step and the PyTorch release's comes from when the step is
GEMM-bound. `--dtype=bfloat16` runs both in bf16 (where the CPU has AMX, oneDNN uses it).
Prints JSON with the machine's load average; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common as bench
from prompt_jax.models import vit


def shapes(width: int, mlp: int, heads: int, batch: int, tokens: int, keys: int
           ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
  """{name: (lhs shape, rhs shape)} of a block's matmuls (leading dims are batch dims)."""
  m, dh = batch * tokens, width // heads
  return {
      'qkv_or_out_proj [M,D]x[D,D]': ((m, width), (width, width)),
      'mlp_fc1 [M,D]x[D,4D]': ((m, width), (width, mlp)),
      'mlp_fc2 [M,4D]x[4D,D]': ((m, mlp), (mlp, width)),
      'fc1_backward [M,4D]x[4D,D]': ((m, mlp), (mlp, width)),
      'fc2_backward [M,D]x[D,4D]': ((m, width), (width, mlp)),
      'attn_scores [BH,T,Dh]x[BH,Dh,S]': ((batch * heads, tokens, dh), (batch * heads, dh, keys)),
      'attn_values [BH,T,S]x[BH,S,Dh]': ((batch * heads, tokens, keys), (batch * heads, keys, dh)),
  }


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--tokens', type=int, default=197, help='live tokens (CLS + patches)')
  ap.add_argument('--prompts', type=int, default=50, help='extra keys (key/value-only prompts)')
  ap.add_argument('--iters', type=int, default=10)
  ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  args = ap.parse_args()
  import torch
  arch = vit.decode_variant(args.variant)
  load_before = bench.load_average()
  rng = np.random.default_rng(0)
  rows, runs, flops = [], {}, {}
  for name, (a_shape, b_shape) in shapes(arch['width'], arch['mlp_dim'], arch['num_heads'],
                                         args.batch, args.tokens,
                                         args.tokens + args.prompts).items():
    a = rng.normal(size=a_shape).astype(np.float32)
    b = rng.normal(size=b_shape).astype(np.float32)
    ja, jb = jnp.asarray(a, args.dtype), jnp.asarray(b, args.dtype)
    f = jax.jit(jnp.matmul).lower(ja, jb).compile()
    ta, tb = (torch.from_numpy(v).to(getattr(torch, args.dtype)) for v in (a, b))
    runs[f'{name}/xla'] = lambda f=f, ja=ja, jb=jb: f(ja, jb).block_until_ready()
    runs[f'{name}/torch'] = lambda ta=ta, tb=tb: torch.matmul(ta, tb)
    flops[name] = 2.0 * np.prod(a_shape) * b_shape[-1]
  secs = bench.time_interleaved(runs, iters=args.iters)
  for name, f in flops.items():
    xla, pt = f / secs[f'{name}/xla'] / 1e9, f / secs[f'{name}/torch'] / 1e9
    rows.append({'matmul': name, 'xla_gflop_s': xla, 'torch_gflop_s': pt,
                 'xla_over_torch': xla / pt})
  print(json.dumps({'benchmark': 'matmul', 'model': f'ViT-{args.variant}', 'batch': args.batch,
                    'tokens': args.tokens, 'prompts': args.prompts, 'dtype': args.dtype,
                    'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
                    'rows': rows, 'load_average_before': load_before,
                    'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
