"""PyTorch's peak memory of the VPT-deep train step (B/16 by default), as the RSS increase of a
fresh process over one SGD step: model, inputs and optimizer are built first, then
`ru_maxrss` (the process's peak resident set) is read before and after two train steps.

  python -m benchmarks.torch_memory [--variant=B/16] [--batch=8] [--prompts=50,200] [--threads=2]

The increase holds what the step adds at its peak (activations kept for the backward pass,
gradients, optimizer state, allocator caching), the counterpart of XLA's temp bytes in
`benchmarks.memory` (whose argument bytes, the weights and inputs, are here in the baseline).
Each P runs in its own process (a peak RSS never goes down). Prints JSON; nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one(variant: str, batch: int, prompts: int, threads: int) -> dict:
  import torch
  sys.path.insert(0, ROOT)
  from references import torch_vit
  from prompt_jax.models import vit
  torch.set_num_threads(threads)
  arch = vit.decode_variant(variant)
  torch.manual_seed(0)
  model = torch_vit.VPTDeepViT(image=224, patch=arch['patch_size'], d=arch['width'],
                               depth=arch['depth'], heads=arch['num_heads'], mlp=arch['mlp_dim'],
                               prompts=prompts, classes=100)
  x = torch.randn(batch, 3, 224, 224)
  y = torch.randint(0, 100, (batch,))
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
  kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
  base = kib()
  for _ in range(2):
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
  peak = kib()
  return {'prompts': prompts, 'baseline_rss_bytes': base * 1024, 'peak_rss_bytes': peak * 1024,
          'step_peak_increase_bytes': (peak - base) * 1024,
          'step_peak_increase_gib': (peak - base) / 2 ** 20}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', default='50,200')
  ap.add_argument('--threads', type=int, default=2)
  ap.add_argument('--one', type=int, default=-1, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.one >= 0:
    print(json.dumps(_one(args.variant, args.batch, args.one, args.threads)))
    return
  from benchmarks import common as bench
  rows = []
  for p in (int(s) for s in args.prompts.split(',')):
    out = subprocess.run([sys.executable, '-m', 'benchmarks.torch_memory', f'--one={p}',
                          f'--variant={args.variant}', f'--batch={args.batch}',
                          f'--threads={args.threads}'], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  import torch
  print(json.dumps({'benchmark': 'torch_memory', 'model': f'VPTDeepViT {args.variant}',
                    'batch': args.batch, 'torch': torch.__version__,
                    'command': ' '.join(['python -m benchmarks.torch_memory'] + sys.argv[1:]),
                    'rows': rows, 'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
