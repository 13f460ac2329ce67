"""Page faults, system time and resident memory per train step: our VPT-deep step with live
tokens, without and with `model.remat`, under each malloc mode (prompt_jax/util/cpu_malloc.py), each
mode in its own process (malloc is set up before JAX's backend exists).

  python -m benchmarks.page_faults [--variant=B/16 --batch=8 --prompts=50 --steps=3]
      [--modes=system,reuse] [--env=MALLOC_ARENA_MAX=1,...]

Prints JSON: per mode and path, minor page faults, user / system CPU seconds and wall seconds
per step (getrusage over `--steps` steps after two warm-up steps), the resident set after them,
and XLA's FLOPs. `--env` adds variables to every mode's process (e.g. glibc's MALLOC_* ones, to
take the reuse settings apart). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from benchmarks import common as bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(args) -> dict:
  from prompt_jax.util import cpu_malloc
  applied = cpu_malloc.maybe_apply()  # before train_step builds anything
  from benchmarks import train_step as ts
  rows = {}
  for name, remat in (('live', False), ('live_remat', True)):
    run, flops, _, _ = ts.jax_step(batch=args.batch, prompts=args.prompts, image=args.image,
                                   variant=args.variant, remat=remat)
    run()
    run()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
      run()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    n = args.steps
    rows[name] = {'minor_faults_per_step': (r1.ru_minflt - r0.ru_minflt) / n,
                  'system_s_per_step': (r1.ru_stime - r0.ru_stime) / n,
                  'user_s_per_step': (r1.ru_utime - r0.ru_utime) / n,
                  'wall_s_per_step': (t1 - t0) / n, 'rss_bytes_after': bench.rss_bytes(),
                  'step_flops': flops}
    del run
  return {'malloc_reuse': applied, 'rows': rows}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', type=int, default=50)
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--steps', type=int, default=3)
  ap.add_argument('--modes', default='system,reuse', help='PROMPT_JAX_MALLOC values')
  ap.add_argument('--env', default='', help='NAME=VALUE,... for every mode\'s process')
  ap.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.one:
    print(json.dumps(_measure(args)))
    return
  load_before = bench.load_average()
  extra = bench.parse_env(args.env)
  modes = {}
  for mode in args.modes.split(','):
    out = subprocess.run([sys.executable, '-m', 'benchmarks.page_faults', '--one'] + sys.argv[1:],
                         cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, **extra, 'PROMPT_JAX_MALLOC': mode})
    if out.returncode:
      raise SystemExit(f'mode {mode} failed:\n{out.stderr[-3000:]}')
    modes[mode] = json.loads(out.stdout.strip().splitlines()[-1])
  print(json.dumps({'benchmark': 'page_faults',
                    'command': ' '.join(['python -m benchmarks.page_faults'] + sys.argv[1:]),
                    'model': f'ViT-{args.variant} VPT-deep P={args.prompts}', 'batch': args.batch,
                    'worker_env': extra, 'modes': modes, 'load_average_before': load_before,
                    'load_average_after': bench.load_average(), 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
