"""Memory of the compiled train step, from XLA's memory analysis (no step is run).

  python -m benchmarks.memory [--variant=B/16] [--batch=8] [--rows=vpt50,vpt200,ship]
      [--paths=live,all_live,live_remat]

Per row and path: `compiled.memory_analysis()` of the trainer's jitted step (temp, argument,
output bytes; temp + argument is what must fit besides the runtime) for live tokens, every token
live (`model.live_tokens=False`) and live with `model.remat=True`; and the largest batch whose
temp + argument bytes fit in 16 GB, from a second compile at 2x the batch (linear fit), or with
`--no_fit` from the one compile assuming temp bytes proportional to the batch and argument bytes
fixed (`max_batch_16gb_proportional`). Prints JSON with the CPU model and load. Nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

import numpy as np

from benchmarks import common as bench

ROWS = {'vpt50': ('vpt_vtab', {'vpt.num_prompts': 50}), 'vpt200': ('vpt_vtab',
                                                                   {'vpt.num_prompts': 200}),
        'ship': ('ship_vtab', {}), 'davpt': ('davpt_vtab', {}), 'spt': ('spt_vtab', {})}
GB16 = 16 * 2 ** 30


def analysed(module: str, overrides: dict, variant: str, batch: int, live: bool,
             remat: bool) -> dict:
  """memory_analysis() of the trainer's step compiled for `batch` (bytes)."""
  import importlib
  from prompt_jax.train import trainer as train
  from prompt_jax.data import registry
  from prompt_jax.data.source import ArraySource
  from prompt_jax.models import vit
  cfg = importlib.import_module(f'prompt_jax.configs.{module}').get_config()
  cfg.unlock()
  cfg.model.variant, cfg.data.image_size, cfg.train.batch_size = variant, 224, batch
  cfg.init.checkpoint = 'random'
  cfg.model.live_tokens, cfg.model.remat = live, remat
  for k, v in overrides.items():
    sec, name = k.split('.')
    cfg[sec][name] = v
  if 'vpt' in cfg:
    cfg.vpt.dropout = 0.0
  depth = vit.decode_variant(variant)['depth']
  if 'davpt' in cfg and cfg.davpt.proxy_end >= depth:
    cfg.davpt.proxy_start = cfg.davpt.proxy_end = depth - 1
  rng = np.random.default_rng(0)
  classes = 10  # prepare() (SHIP's k-means) sees 2 images per class
  x = rng.normal(size=(batch, 224, 224, 3)).astype(np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  xp = rng.normal(size=(2 * classes, 224, 224, 3)).astype(np.float32)
  yp = (np.arange(2 * classes) % classes).astype(np.int32)
  arrays = {s: (xp, yp) for s in ('train800val200', 'train800', 'val200', 'test', 'train', 'val',
                                   cfg.data.train_split, cfg.data.val_split, *cfg.data.eval_splits)}
  orig = registry.get_source
  registry.get_source = lambda c: ArraySource(arrays, num_classes=classes)
  try:
    setup = train.build(cfg, tempfile.mkdtemp(prefix='bench_mem_'))
  finally:
    registry.get_source = orig
  _, compiled, compile_s, _, _ = bench.compile_trainer_step(setup, x, y)
  ma = compiled.memory_analysis()
  return {'temp_bytes': int(ma.temp_size_in_bytes),
          'argument_bytes': int(ma.argument_size_in_bytes),
          'output_bytes': int(ma.output_size_in_bytes), 'compile_s': compile_s,
          'flops': bench.compiled_flops(compiled)}


def max_batch(a: dict, b: dict, batch: int, budget: int = GB16) -> int:
  """Largest batch with temp + argument bytes <= budget, linear through the two compiles
  (a at `batch`, b at 2 * `batch`)."""
  used = lambda m: m['temp_bytes'] + m['argument_bytes']
  per = (used(b) - used(a)) / batch
  fixed = used(a) - per * batch
  return int((budget - fixed) // per) if per > 0 else -1


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--rows', default='vpt50,vpt200,ship')
  ap.add_argument('--paths', default='live,all_live,live_remat')
  ap.add_argument('--no_fit', action='store_true', help='skip the 2x-batch compile (16 GB fit)')
  args = ap.parse_args()
  load_before = bench.load_average()
  out = {}
  for name in args.rows.split(','):
    module, over = ROWS[name]
    row = {}
    for path in args.paths.split(','):
      live, remat = path != 'all_live', path.endswith('remat')
      m = analysed(module, over, args.variant, args.batch, live, remat)
      if not args.no_fit:
        m2 = analysed(module, over, args.variant, 2 * args.batch, live, remat)
        m['max_batch_16gb'] = max_batch(m, m2, args.batch)
      m['max_batch_16gb_proportional'] = int(
          (GB16 - m['argument_bytes']) // (m['temp_bytes'] / args.batch))
      m['temp_plus_argument_gb'] = (m['temp_bytes'] + m['argument_bytes']) / 2 ** 30
      row[path] = m
    out[name] = row
  print(json.dumps({'benchmark': 'memory', 'variant': args.variant, 'batch': args.batch,
                    'command': ' '.join(['python -m benchmarks.memory'] + sys.argv[1:]),
                    'rows': out, 'load_average_before': load_before,
                    'load_average_after': bench.load_average(), 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
