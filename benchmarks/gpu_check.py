"""GPU check: accelerator tests, the suite's train steps in bf16 with fused (cuDNN) attention, and
PyTorch CUDA (SDPA, flash where it applies) eager and `torch.compile`d, in one JSON.

  bash benchmarks/gpu_check.sh            # on a machine with an NVIDIA GPU (< 8 min)
  bash benchmarks/gpu_check.sh --cpu      # dry mode: the same path on CPU at Mu/8 32px, float32

GPU mode: pytest tests/train/test_accelerators.py; per method (benchmarks.run rows without PyTorch)
the trainer's jitted step at B/16, batch 64, `model.compute_dtype='bfloat16'`,
`model.attention='auto'` (= 'fused': cuDNN on GPU in bf16); then VPT-deep P=50 against references
VPTDeepViT on CUDA under bf16 autocast with SDPA restricted to flash / memory-efficient kernels,
eager and compiled, all three timed in interleaved rounds. `--cpu` runs every stage on the CPU with
a micro model (the accelerator tests are only collected) so CI checks that the script works.
Nothing is asserted; the JSON records errors per stage instead of stopping.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import common as bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def accelerator_tests(cpu: bool, timeout: int) -> dict:
  """pytest tests/train/test_accelerators.py (collected only in --cpu mode)."""
  cmd = [sys.executable, '-m', 'pytest', 'tests/train/test_accelerators.py', '-q', '-x']
  cmd += ['--collect-only'] if cpu else []
  t = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
  lines = out.stdout.strip().splitlines()
  return {'command': ' '.join(cmd[2:]), 'returncode': out.returncode,
          'summary': lines[-1] if lines else out.stderr[-300:], 'seconds': time.perf_counter() - t}


def torch_vpt(variant: str, batch: int, image: int, prompts: int, device: str, dtype: str):
  """(eager run, compiled run, first-call seconds of the compiled one) of VPTDeepViT's SGD step."""
  import torch
  from references.torch_vit import VPTDeepViT
  from prompt_jax.models import vit
  a = vit.decode_variant(variant)
  kw = dict(image=image, patch=a['patch_size'], d=a['width'], depth=a['depth'],
            heads=a['num_heads'], mlp=a['mlp_dim'], prompts=prompts, classes=100)
  x = torch.randn(batch, 3, image, image, device=device)
  y = torch.randint(0, 100, (batch,), device=device)
  amp = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == 'bfloat16')
  if device == 'cuda':
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kernels = lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
  else:
    import contextlib
    kernels = contextlib.nullcontext

  def make(compiled: bool):
    torch.manual_seed(0)
    model = VPTDeepViT(**kw).to(device)
    if compiled:
      model.compile()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)

    def run():
      opt.zero_grad(set_to_none=True)
      with amp, kernels():
        loss = torch.nn.functional.cross_entropy(model(x), y)
      loss.backward()
      opt.step()
      if device == 'cuda':
        torch.cuda.synchronize()
    return run

  compiled, first_s = bench.torch_compiled(lambda: make(True))
  return make(False), compiled, first_s


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--cpu', action='store_true', help='dry mode on CPU with a micro model')
  ap.add_argument('--iters', type=int, default=0, help='timed rounds (0: 10 on GPU, 1 on CPU)')
  ap.add_argument('--methods', default='vpt_deep,ship,davpt,spt')
  ap.add_argument('--skip_tests', action='store_true')
  args = ap.parse_args()
  import jax
  from benchmarks import run as suite
  t0 = time.perf_counter()
  gpu = jax.default_backend() == 'gpu'
  out = {'benchmark': 'gpu_check', 'mode': 'cpu' if args.cpu else 'gpu',
         'load_average_before': bench.load_average()}
  if not args.cpu and not gpu:
    out['error'] = (f'no GPU: jax.default_backend() is {jax.default_backend()!r}; run on a machine '
                    'with an NVIDIA GPU and jax[cuda], or pass --cpu for the dry mode')
    print(json.dumps(out, indent=1))
    sys.exit(2)
  variant, image, batch = ('Mu/8', 32, 8) if args.cpu else ('B/16', 224, 64)
  dtype = 'float32' if args.cpu else 'bfloat16'
  iters = args.iters or (1 if args.cpu else 10)
  out.update(variant=variant, image=image, batch=batch, dtype=dtype, attention='auto')
  if not args.skip_tests:
    try:
      out['accelerator_tests'] = accelerator_tests(args.cpu, timeout=240)
    except subprocess.TimeoutExpired:
      out['accelerator_tests'] = {'error': 'timed out after 240 s'}
  peak = bench.matmul_peak_flops(1024 if args.cpu else 8192, jax.numpy.dtype(dtype))
  out['matmul_peak_flops_per_s'] = peak
  rows = []
  for name in args.methods.split(','):
    try:
      rows.append(suite.bench_one(name, suite.METHODS[name], variant, batch, image, iters, peak,
                                  dtype, with_torch=False, harness='inline'))
    except Exception as e:  # one failing method must not hide the others
      rows.append({'method': name, 'error': f'{type(e).__name__}: {e}'[:300]})
  out['rows'] = rows
  try:  # VPT-deep P=50: JAX live step vs PyTorch eager / compiled, interleaved
    run, info = suite.jax_worker(module='vpt_vtab', variant=variant, batch=batch, image=image,
                                 classes=100, dtype=dtype)
    flops, mem = info['flops'], info['memory']
    eager, compiled, first_s = torch_vpt(variant, batch, image, 50,
                                         'cpu' if args.cpu else 'cuda', dtype)
    times = bench.time_rounds({'jax': run, 'torch': eager, 'torch_compiled': compiled},
                              iters=iters)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out['vpt_deep_vs_torch'] = {
        'timing': {k: bench.spread(v, batch) for k, v in times.items()},
        'torch_compile_s': first_s - med['torch_compiled'], 'jax_step_flops': flops,
        'jax_memory': mem,
        'jax_over_best_torch': min(med['torch'], med['torch_compiled']) / med['jax']}
  except Exception as e:
    out['vpt_deep_vs_torch'] = {'error': f'{type(e).__name__}: {e}'[:300]}
  out.update(wall_s=time.perf_counter() - t0, load_average_after=bench.load_average(),
             machine=bench.machine())
  print(json.dumps(out, indent=1, default=str))


if __name__ == '__main__':
  main()
