"""XLA:CPU flags of the installed jaxlib, measured: each flag set in its own process (XLA reads
XLA_FLAGS once, at backend start), the sets timed in interleaved rounds (set A, B, C, A, B, C...)
so that a shared machine's load hits them alike.

  python -m benchmarks.xla_flags [--rounds=3] [--iters=3] [--variant=B/16] [--depth=2]
      [--sets=default,onednn,...] [--dtype=bfloat16]

Per set and round: a square 2048² matmul (GFLOP/s) and a VPT-deep-shaped train step of a
`depth`-block ViT (grads to 50 prompt tokens only, frozen weights: the dX-only backward VPT runs),
in images/s, all in `--dtype` (bfloat16: does a flag reach the CPU's bf16 units, e.g. AMX?).
Prints JSON with min / median over rounds, the CPU model and the load average.
Nothing is asserted; `prompt_jax.xla_defaults` holds the set chosen from these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks import common as bench

# Flags of jaxlib 0.10's XLA:CPU (names from its DebugOptions) worth measuring for a ViT step.
SETS = {
    'default': '',
    'onednn': '--xla_cpu_use_onednn=true',
    'onednn_custom_call': ('--xla_cpu_use_onednn=true '
                           '--xla_cpu_experimental_onednn_custom_call=true'),
    'xnnpack': '--xla_cpu_use_xnnpack=true',
    'xnn_fusion_dot': '--xla_cpu_experimental_xnn_fusion_type=dot',
    'fast_math': '--xla_cpu_enable_fast_math=true',
    'vector_512': '--xla_cpu_prefer_vector_width=512',
    'concurrency_scheduler': '--xla_cpu_enable_concurrency_optimized_scheduler=true',
}

_CHILD = r'''
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from prompt_jax.models import vit
variant, depth, iters, batch, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 8, 50
dtype = jnp.dtype(sys.argv[4])
a = jnp.ones((2048, 2048), dtype)
mm = jax.jit(lambda x: x @ x)
mm(a).block_until_ready()
ts = []
for _ in range(iters):
  t = time.perf_counter(); mm(a).block_until_ready(); ts.append(time.perf_counter() - t)
gflops = 2 * 2048 ** 3 / min(ts) / 1e9
arch = vit.decode_variant(variant)
enc = vit.Encoder(depth, arch['mlp_dim'], arch['num_heads'])
d, n = arch['width'], (224 // arch['patch_size']) ** 2 + 1
x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, n, d)), dtype)
prm = jnp.zeros((prompts, d), dtype)
params = jax.tree.map(lambda w: w.astype(dtype),
                      enc.init(jax.random.PRNGKey(0), jnp.zeros((batch, n + prompts, d))))
def loss(prm, params, x):
  tok = jnp.concatenate([x, jnp.broadcast_to(prm, (batch,) + prm.shape)], axis=1)
  return jnp.mean(enc.apply(params, tok)['pooled'] ** 2)
step = jax.jit(jax.grad(loss))
def timed():
  t = time.perf_counter()
  step(prm, params, x).block_until_ready()
  return time.perf_counter() - t
compile_s = timed()
ts = [timed() for _ in range(iters)]
print(json.dumps({'matmul_gflops': gflops, 'step_s': min(ts), 'first_call_s': compile_s}))
'''


def run_set(flags: str, variant: str, depth: int, iters: int, dtype: str = 'float32') -> dict:
  env = dict(os.environ, XLA_FLAGS=flags, PROMPT_JAX_XLA_DEFAULTS='0')
  out = subprocess.run([sys.executable, '-c', _CHILD, variant, str(depth), str(iters), dtype],
                       env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    return {'error': out.stderr.strip()[-400:]}
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--iters', type=int, default=3)
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--depth', type=int, default=2)
  ap.add_argument('--sets', default=','.join(SETS))
  ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  args = ap.parse_args()
  names = args.sets.split(',')
  load_before = bench.load_average()
  runs = {k: [] for k in names}
  for _ in range(args.rounds):
    for k in names:
      runs[k].append(run_set(SETS[k], args.variant, args.depth, args.iters, args.dtype))
  rows = {}
  for k, rs in runs.items():
    ok = [r for r in rs if 'error' not in r]
    if not ok:
      rows[k] = {'flags': SETS[k], 'error': rs[0]['error']}
      continue
    mm = [r['matmul_gflops'] for r in ok]
    st = [r['step_s'] for r in ok]
    rows[k] = {'flags': SETS[k], 'matmul_gflops_max': max(mm),
               'matmul_gflops_median': bench.median(mm), 'step_images_per_s_max': 8 / min(st),
               'step_images_per_s_median': 8 / bench.median(st), 'rounds': len(ok)}
  base = rows.get('default', {})
  for r in rows.values():
    if 'step_images_per_s_max' in r and 'step_images_per_s_max' in base:
      r['step_vs_default_best'] = r['step_images_per_s_max'] / base['step_images_per_s_max']
      r['step_vs_default_median'] = r['step_images_per_s_median'] / base['step_images_per_s_median']
  print(json.dumps({'benchmark': 'xla_flags', 'variant': args.variant, 'depth': args.depth,
                    'batch': 8, 'prompts': 50, 'dtype': args.dtype, 'rounds': args.rounds,
                    'iters': args.iters,
                    'rows': rows, 'load_average_before': load_before,
                    'load_average_after': bench.load_average(), 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
