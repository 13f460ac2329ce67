"""Page faults and system time per train step: our VPT-deep step with live tokens, without and
with `model.remat`, one after the other in this process (the profile behind remat's CPU speed-up).

  python -m benchmarks.page_faults [--variant=B/16 --batch=8 --prompts=50 --steps=3]

Prints JSON: per path, minor page faults, user / system CPU seconds and wall seconds per step
(getrusage over `--steps` steps after two warm-up steps), and XLA's FLOPs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from benchmarks import common as bench
from benchmarks import train_step as ts


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', type=int, default=50)
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--steps', type=int, default=3)
  args = ap.parse_args()
  load_before = bench.load_average()
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
                  'wall_s_per_step': (t1 - t0) / n, 'step_flops': flops}
    del run
  print(json.dumps({'benchmark': 'page_faults',
                    'command': ' '.join(['python -m benchmarks.page_faults'] + sys.argv[1:]),
                    'model': f'ViT-{args.variant} VPT-deep P={args.prompts}', 'batch': args.batch,
                    'rows': rows, 'load_average_before': load_before,
                    'load_average_after': bench.load_average(), 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
