"""Train-step throughput: prompt_jax VPT-deep (live tokens and all tokens live) vs the same model in
PyTorch, in one run.

  python -m benchmarks.train_step [--variant=B/16 --batch=8 --prompts=50,100,200 --iters=5]
      [--attention=auto] [--paths=live,full,live_remat] [--dtype=bfloat16] [--no_torch]
      [--harness=process|inline]

For each prompt count P: our trainer's jitted step with `model.live_tokens=True` ('live': prompts
are key/value-only in every block, exact) and False ('full': every token in every block, what the
release computes), and the PyTorch release-style step (references/torch_vit.VPTDeepViT,
all tokens live). `--attention=einsum,fused` times both attention implementations
(models/attention.py). Prints JSON: images/s, ratios to PyTorch, FLOPs of each compiled step (XLA
cost analysis: the live step's count holds only the live-token work) and their utilisation of a
measured matmul peak, and the machine's load average before and after. The candidates of one P are
timed round-robin, so a shared machine's load changes hit them alike, each in its own process by
default (`--harness=process`, `common.time_candidates`: the others wait, blocked, while one is
timed; `--harness=inline` times all in this process); every candidate reports
images/s at its fastest and its median round.

PyTorch is timed eager ('torch') and `torch.compile`d ('torch_compiled', mode default, compile
time reported apart as `torch_compile_s`); `*_over_best_torch` divides by the faster of the two
(per statistic: fastest round over fastest round, median over median). `--no_compile` skips it.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import common as bench
from benchmarks import torch_side
from prompt_jax.configs import vpt_vtab
from prompt_jax.train import trainer as train
from prompt_jax.util import tree
from prompt_jax.data.source import ArraySource


def jax_step(batch: int, prompts: int, image: int, variant: str, classes: int = 100,
             live_tokens: bool = True, attention: str = 'auto', remat: bool = False,
             dtype: str = 'float32'):
  cfg = vpt_vtab.get_config()
  cfg.unlock()
  cfg.model.variant = variant
  cfg.model.live_tokens = live_tokens
  cfg.model.remat = remat
  cfg.model.compute_dtype = dtype
  cfg.model.attention = attention
  cfg.vpt.num_prompts = prompts
  cfg.vpt.dropout = 0.0
  cfg.data.image_size = image
  cfg.train.batch_size = batch
  cfg.init.checkpoint = 'random'  # timing only: a random backbone on purpose
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, image, image, 3)).astype(np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  src = ArraySource({'train800val200': (x, y), 'test': (x, y)}, num_classes=classes)
  from prompt_jax.data import registry
  orig = registry.get_source
  registry.get_source = lambda c: src
  try:
    setup = train.build(cfg, '/tmp/bench_unused')
  finally:
    registry.get_source = orig
  run, compiled, compile_s, trainable, _ = bench.compile_trainer_step(setup, x, y)
  return run, bench.compiled_flops(compiled), compile_s, tree.count(trainable)


def torch_step(batch: int, prompts: int, image: int, classes: int = 100, compile: bool = False,
               dtype: str = 'float32', **arch):
  import torch
  from references.torch_vit import VPTDeepViT
  torch.manual_seed(0)
  model = VPTDeepViT(image=image, prompts=prompts, classes=classes, **arch)
  if compile:
    model.compile()  # torch.compile, mode default, of the module's forward (in place)
  opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
  x = torch.randn(batch, 3, image, image)
  y = torch.randint(0, classes, (batch,))

  # bfloat16: autocast on CPU (matmuls in bf16, parameters and optimizer in float32), the PyTorch
  # counterpart of our model.compute_dtype='bfloat16'
  amp = torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16')

  def run():
    opt.zero_grad(set_to_none=True)
    with amp:
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  return run, torch.get_num_threads(), torch.__version__


def jax_worker(**kw):
  """`jax_step` as a `common.time_candidates` spec: (run, info)."""
  run, flops, compile_s, n_train = jax_step(**kw)
  return run, {'flops': flops, 'compile_s': compile_s, 'trainable': n_train}


def torch_worker(compile: bool = False, **kw):
  """`torch_step` as a `common.time_candidates` spec; compiled: the first call (trace + compile +
  one step) is made here and its seconds returned as `first_call_s`."""
  if not compile:
    run, threads, version = torch_step(**kw)
    return run, {'threads': threads, 'torch': version}
  run, first_s = bench.torch_compiled(lambda: torch_step(compile=True, **kw)[0])
  return run, {'first_call_s': first_s}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', default='50,100,200', help='comma-separated prompt counts')
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--iters', type=int, default=5)
  ap.add_argument('--attention', default='auto', help='comma-separated: auto, einsum, fused')
  ap.add_argument('--paths', default='live,full',
                  help="comma-separated: 'live', 'full' (all tokens live), 'live_remat' "
                  "(live with model.remat); 'none': PyTorch alone")
  ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                  help='bfloat16: our model.compute_dtype and PyTorch autocast (CPU: avx512_bf16)')
  ap.add_argument('--no_torch', action='store_true')
  ap.add_argument('--no_compile', action='store_true', help='skip the torch.compile candidate')
  ap.add_argument('--harness', default='process', choices=('process', 'inline'),
                  help='process: each candidate in its own process (common.time_candidates)')
  ap.add_argument('--env', default='', help='NAME=VALUE,...: added to the candidates\' '
                  'processes (e.g. OMP_WAIT_POLICY=PASSIVE, GLIBC_TUNABLES=glibc.malloc.hugetlb=1)')
  args = ap.parse_args()
  if not args.no_torch:
    torch_side.exit_if_problem('benchmarks.train_step')  # one line, not a crash in a candidate
  from prompt_jax.models import vit
  arch = vit.decode_variant(args.variant)
  env = bench.parse_env(args.env)
  load_before = bench.load_average()
  peak = bench.matmul_peak_flops()
  rows = []
  for p in (int(v) for v in args.prompts.split(',')):
    row, specs = {'prompts': p}, {}
    for attention in args.attention.split(','):
      for path in (q for q in args.paths.split(',') if q not in ('', 'none')):
        key = path if attention == 'auto' else f'{path}_{attention}'
        specs[key] = ('benchmarks.train_step', 'jax_worker', dict(
            batch=args.batch, prompts=p, image=args.image, variant=args.variant,
            live_tokens=path != 'full', remat=path == 'live_remat', attention=attention,
            dtype=args.dtype))
    if not args.no_torch:
      kw = dict(batch=args.batch, prompts=p, image=args.image, dtype=args.dtype,
                patch=arch['patch_size'],
                d=arch['width'], depth=arch['depth'], heads=arch['num_heads'], mlp=arch['mlp_dim'])
      specs['torch'] = ('benchmarks.train_step', 'torch_worker', kw)
      if not args.no_compile:
        specs['torch_compiled'] = ('benchmarks.train_step', 'torch_worker',
                                   dict(kw, compile=True))
    times, infos = bench.time_candidates(specs, harness=args.harness, iters=args.iters,
                                         env=env)
    for key, info in infos.items():
      if key.startswith('torch'):
        if 'threads' in info:
          row.update(torch_threads=info['threads'], torch=info['torch'])
        if 'first_call_s' in info:
          row['torch_compiled_first_call_s'] = info['first_call_s']
      else:
        row.update({f'jax_{key}_step_flops': info['flops'],
                    f'jax_{key}_compile_s': info['compile_s'],
                    'trainable_params': info['trainable']})
    row['malloc_reuse'] = {k: info.get('malloc_reuse') for k, info in infos.items()}
    secs = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: float(np.min(v)) for k, v in times.items()}
    if 'torch_compiled' in secs:
      row['torch_compile_s'] = row['torch_compiled_first_call_s'] - secs['torch_compiled']
    torch_keys = [k for k in secs if k.startswith('torch')]
    for key, t in secs.items():
      name = key if key.startswith('torch') else f'jax_{key}'
      row[f'{name}_images_per_s'] = args.batch / t
      row[f'{name}_timing'] = bench.spread(times[key], args.batch)
      if key not in torch_keys:
        row[f'jax_{key}_flop_utilisation'] = row[f'jax_{key}_step_flops'] / t / peak
        if 'torch' in secs:
          row[f'{key}_over_torch'] = secs['torch'] / t
        if torch_keys:
          row[f'{key}_over_best_torch'] = {
              'median': min(secs[k] for k in torch_keys) / t,
              'best': min(best[k] for k in torch_keys) / best[key]}
    if torch_keys:
      row['best_torch'] = min(torch_keys, key=secs.get)
    if 'live' in secs and 'full' in secs:
      row['live_over_full'] = secs['full'] / secs['live']
    rows.append(row)
  print(json.dumps({
      'benchmark': 'train_step',
      'command': ' '.join(['python -m benchmarks.train_step'] + sys.argv[1:]),
      'model': f'ViT-{args.variant} VPT-deep', 'batch': args.batch,
      'image': args.image, 'dtype': args.dtype, 'attention': args.attention,
      'harness': args.harness, 'worker_env': env,
      'matmul_peak_flops_per_s': peak, 'rows': rows,
      'load_average_before': load_before,
      'load_average_after': bench.load_average(), 'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
