"""Benchmark suite: train-step throughput, FLOP utilisation, memory and compile time per method.

  python -m benchmarks.run --quick      # Mu/8 at 32px, ~1 minute on 2 CPU cores
  python -m benchmarks.run              # S/16 and B/16 at 224px (CPU: tens of minutes)

Prints one JSON table. JAX rows use the trainer's own train step (`train.make_train_step`) built
from each method's config; PyTorch rows (benchmarks/torch_vit.py) exist for VPT-deep, which is
also SPT's train-step model. Methods that fail to build are reported as 'skipped: reason'.
"""

import argparse
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common as bench
from benchmarks import train_step as ts

METHODS = {'vpt_deep': 'vpt_vtab', 'ship': 'ship_vtab', 'davpt': 'davpt_vtab', 'spt': 'spt_vtab'}


def _jax_step(module: str, variant: str, batch: int, image: int, classes: int, dtype: str):
  """ts.jax_step generalised to any method config (same construction)."""
  import importlib  # pylint: disable=g-import-not-at-top
  from prompt_jax import optim, train  # pylint: disable=g-import-not-at-top
  from prompt_jax.data import registry  # pylint: disable=g-import-not-at-top
  from prompt_jax.data.source import ArraySource  # pylint: disable=g-import-not-at-top
  cfg = importlib.import_module(f'configs.{module}').get_config()
  cfg.unlock()
  cfg.model.variant, cfg.data.image_size, cfg.train.batch_size = variant, image, batch
  cfg.model.compute_dtype = dtype
  if 'vpt' in cfg:  # same prompt count as the PyTorch VPT-deep row
    cfg.vpt.num_prompts, cfg.vpt.dropout = 50, 0.0
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, image, image, 3)).astype(np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  arrays = {s: (x, y) for s in ('train800val200', 'train800', 'val200', 'test', 'train', 'val')}
  for s in (cfg.data.train_split, cfg.data.val_split, *cfg.data.eval_splits):
    arrays[s] = (x, y)
  src = ArraySource(arrays, num_classes=classes)
  orig = registry.get_source
  registry.get_source = lambda c: src
  try:
    setup = train.build(cfg, tempfile.mkdtemp(prefix='bench_run_'))  # fresh: prepare() is cached per workdir
  finally:
    registry.get_source = orig
  trainable, frozen = train.split_params(setup.params, *train.trainable_patterns(setup.method, cfg))
  tx, _ = optim.make_optimizer(cfg.train, trainable, 10)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable, 'opt_state': tx.init(trainable),
           'method_state': setup.method.init_state(setup.prepared, cfg), 'rng': jax.random.PRNGKey(0)}
  b = {'image': jnp.asarray(x), 'label': jnp.asarray(y), 'mask': jnp.ones(batch, bool)}
  t = time.perf_counter()
  compiled = jax.jit(train.make_train_step(setup, tx)).lower(state, frozen, b).compile()
  compile_s = time.perf_counter() - t
  holder = {'s': state}

  def run():
    holder['s'], m = compiled(holder['s'], frozen, b)
    m['loss'].block_until_ready()

  mem = {}
  try:
    ma = compiled.memory_analysis()
    mem = {'temp_bytes': int(ma.temp_size_in_bytes), 'argument_bytes': int(ma.argument_size_in_bytes),
           'output_bytes': int(ma.output_size_in_bytes)}
  except Exception as e:  # pylint: disable=broad-except
    mem = {'unavailable': str(e)}
  return run, bench.compiled_flops(compiled), compile_s, train.count_params(trainable), mem


def bench_one(name, module, variant, batch, image, iters, peak, dtype, with_torch):
  from prompt_jax.models import vit  # pylint: disable=g-import-not-at-top
  row = {'method': name, 'model': f'ViT-{variant}', 'batch': batch, 'image': image, 'dtype': dtype}
  try:
    run, flops, compile_s, n_train, mem = _jax_step(module, variant, batch, image, 100, dtype)
  except Exception as e:  # pylint: disable=broad-except
    return {**row, 'skipped': f'{type(e).__name__}: {e}'[:300]}
  t = bench.time_fn(run, iters=iters)
  row.update(trainable_params=n_train, jax_images_per_s=batch / t, jax_step_flops=flops,
             jax_flop_utilisation=flops / t / peak, jax_compile_s=compile_s, jax_memory=mem)
  if with_torch and name in ('vpt_deep', 'spt') and dtype == 'float32':
    arch = vit.decode_variant(variant)
    run_t, threads, _ = ts.torch_step(batch, 50, image, patch=arch['patch_size'], d=arch['width'],
                                      depth=arch['depth'], heads=arch['num_heads'], mlp=arch['mlp_dim'])
    tt = bench.time_fn(run_t, iters=iters)
    row.update(torch_images_per_s=batch / tt, jax_over_torch=tt / t, torch_threads=threads,
               torch_model='benchmarks.torch_vit.VPTDeepViT (P=50)')
  elif with_torch:
    row['torch'] = 'skipped: no PyTorch counterpart in this suite yet (benchmarks/torch_ship.py not written)'
  return row


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--quick', action='store_true')
  ap.add_argument('--iters', type=int, default=3)
  ap.add_argument('--no_torch', action='store_true')
  ap.add_argument('--variants', default='S/16,B/16', help='full run: comma-separated ViT variants')
  args = ap.parse_args()
  gpu = jax.default_backend() != 'cpu'
  dtype = 'bfloat16' if gpu else 'float32'
  grid = [('Mu/8', 8, 32)] if args.quick else [(v, 8, 224) for v in args.variants.split(',')]
  t0 = time.perf_counter()
  peak = bench.matmul_peak_flops(1024 if args.quick else 2048,
                                 jnp.bfloat16 if gpu else jnp.float32)
  rows = [bench_one(n, m, v, b, i, args.iters, peak, dtype, not args.no_torch)
          for v, b, i in grid for n, m in METHODS.items()]
  print(json.dumps({'benchmark': 'suite', 'quick': args.quick, 'matmul_peak_flops_per_s': peak,
                    'rows': rows, 'wall_s': time.perf_counter() - t0, 'machine': bench.machine()},
                   indent=1, default=str))


if __name__ == '__main__':
  main()
