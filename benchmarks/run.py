"""Benchmark suite: train-step throughput, FLOP utilisation, memory and compile time per method.

  python -m benchmarks.run --quick      # Mu/8 at 32px, ~1 minute on 2 CPU cores
  python -m benchmarks.run              # S/16 and B/16 at 224px (CPU: tens of minutes)
  python -m benchmarks.run --dtype=bfloat16   # bf16: ours, and PyTorch under CPU autocast

Each row also reports XLA's cost analysis of the compiled step (`jax_step_flops`,
`jax_step_bytes_accessed`, of the step compiled for the device it runs on) and a roofline
estimate from them for an H100 SXM and a TPU v5e (`roofline`: max(FLOPs / peak, bytes /
bandwidth); the assumed peaks and their sources are `common.ACCELERATORS`). On CPU the byte count
is of the CPU's fusion decisions, so the estimate is a bound of the same step's arithmetic, not a
prediction of the accelerator's compiled program.

Prints one JSON table. JAX rows use the trainer's own train step (`steps.make_train_step`) built
from each method's config (live tokens, the default), and time it again with every token live in
every block (`model.live_tokens=False`: `jax_images_per_s_all_live`, `live_over_all_live`); XLA's
FLOPs of the live step count only the live-token work. Every row also times an independent PyTorch
model of the same train step in the same run (all tokens live, as the releases):
references/torch_vit.py VPTDeepViT (VPT-deep; SPT with its pool / drop path / AdamW),
torch_ship.py SHIPViT (with the anchors and prototype bank the JAX row's prepare() found),
torch_davpt.py DAVPTViT (with the JAX row's class map and trainable biases). Before timing, the JAX
params are copied into the PyTorch model and logits / loss of one training-mode forward (drop path
off) are compared ('check'); trainable parameter counts of both are reported. PyTorch is timed with
its default thread count (torch_images_per_s, jax_over_torch: the same cores JAX uses) and with 1
thread (torch_images_per_s_1thread, jax_over_torch_1thread; JAX is not re-timed at 1 thread): on a
contended 2-core box 2-thread PyTorch can be 5-100x slower. PyTorch is also timed
`torch.compile`d (mode default; `torch_compile_s` apart; `--no_compile` skips it), and
`jax_over_best_torch` divides by the faster of eager and compiled. The JAX steps and both PyTorch
steps are timed in interleaved rounds, each in its own process by default (`--harness=process`,
`common.time_candidates`; `--harness=inline`: all in this process); `timing` has images/s at the
fastest and the median round of each. Methods that fail to build: 'skipped: reason'.
"""

import argparse
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common as bench
from benchmarks import torch_side

METHODS = {'vpt_deep': 'vpt_vtab', 'ship': 'ship_vtab', 'davpt': 'davpt_vtab', 'spt': 'spt_vtab'}


def _jax_setup(module: str, variant: str, batch: int, image: int, classes: int, dtype: str,
               live_tokens: bool = True):
  """(setup, cfg, x, y): the method's config at `variant` on random data, built as the trainer
  builds it (prepare() included); ts.jax_step generalised to any method config."""
  import importlib
  from prompt_jax.train import trainer as train
  from prompt_jax.data import registry
  from prompt_jax.data.source import ArraySource
  from prompt_jax.models import vit
  cfg = importlib.import_module(f'prompt_jax.configs.{module}').get_config()
  cfg.unlock()
  cfg.model.variant, cfg.data.image_size, cfg.train.batch_size = variant, image, batch
  cfg.model.compute_dtype = dtype
  cfg.init.checkpoint = 'random'  # timing only: a random backbone on purpose
  cfg.model.live_tokens = live_tokens
  if 'vpt' in cfg:  # same prompt count as the PyTorch VPT-deep row
    cfg.vpt.num_prompts, cfg.vpt.dropout = 50, 0.0
  depth = vit.decode_variant(variant)['depth']
  if 'davpt' in cfg and cfg.davpt.proxy_end >= depth:  # proxy layer 11 -> the last layer (Mu: 3)
    cfg.davpt.proxy_start = cfg.davpt.proxy_end = depth - 1
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, image, image, 3)).astype(np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  # prepare() (SHIP anchors, DA-VPT class clusters, SPT prototypes) sees 2 images of every class
  n_prep = 2 * classes
  x_prep = rng.normal(size=(n_prep, image, image, 3)).astype(np.float32)
  y_prep = (np.arange(n_prep) % classes).astype(np.int32)
  arrays = {s: (x_prep, y_prep) for s in ('train800val200', 'train800', 'val200', 'test', 'train',
                                          'val')}
  for s in (cfg.data.train_split, cfg.data.val_split, *cfg.data.eval_splits):
    arrays[s] = (x_prep, y_prep)
  src = ArraySource(arrays, num_classes=classes)
  orig = registry.get_source
  registry.get_source = lambda c: src
  try:
    # a fresh workdir: prepare() is cached per workdir
    setup = train.build(cfg, tempfile.mkdtemp(prefix='bench_run_'))
  finally:
    registry.get_source = orig
  return setup, cfg, x, y


def jax_worker(**kw):
  """The trainer's compiled step for `_jax_setup(**kw)`, as a `common.time_candidates` spec:
  (run, info) with XLA's FLOPs / bytes, compile seconds, trainable count and memory analysis."""
  from prompt_jax.util import tree
  setup, _, x, y = _jax_setup(**kw)
  run, compiled, compile_s, trainable, _ = bench.compile_trainer_step(setup, x, y)
  try:
    ma = compiled.memory_analysis()
    mem = {'temp_bytes': int(ma.temp_size_in_bytes),
           'argument_bytes': int(ma.argument_size_in_bytes),
           'output_bytes': int(ma.output_size_in_bytes)}
  except Exception as e:
    mem = {'unavailable': str(e)}
  return run, {'flops': bench.compiled_flops(compiled), 'cost': bench.compiled_cost(compiled),
               'compile_s': compile_s, 'trainable': tree.count(trainable), 'memory': mem}


def _jax_context(**kw) -> dict:
  """What the PyTorch row needs from the JAX side (no step compiled): the built setup, its data
  and the method state the loss reads (SHIP, DA-VPT)."""
  setup, cfg, x, y = _jax_setup(**kw)
  *_, state = bench.trainer_state(setup)
  return {'setup': setup, 'cfg': cfg, 'x': x, 'y': y, 'method_state': state['method_state']}


# ---------------------------------------------------------------- PyTorch counterparts


def _torch_model(name: str, cfg, prepared: dict, variant: str, image: int, classes: int):
  """(model, train-step factory(model, x, y) -> run, description) for method `name`."""
  import torch
  from references import torch_davpt, torch_ship, torch_vit
  from prompt_jax.models import vit
  arch = vit.decode_variant(variant)
  kw = dict(image=image, patch=arch['patch_size'], d=arch['width'], depth=arch['depth'],
            heads=arch['num_heads'], mlp=arch['mlp_dim'], classes=classes,
            drop_path=cfg.model.drop_path)
  tr = cfg.train
  torch.manual_seed(0)
  if name in ('vpt_deep', 'spt'):
    model = torch_vit.VPTDeepViT(prompts=cfg.vpt.num_prompts, pool=cfg.model.pool, **kw)

    def step(m, x, y):
      params = [p for p in m.parameters() if p.requires_grad]
      opt = (torch.optim.SGD(params, lr=0.01, momentum=tr.momentum) if tr.optimizer == 'sgd' else
             torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.wd, eps=tr.eps))

      def run():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
      return run
    desc = (f'references.torch_vit.VPTDeepViT (P={cfg.vpt.num_prompts}, '
            f'pool={cfg.model.pool}, '
            f'drop_path={cfg.model.drop_path}, {tr.optimizer})')
  elif name == 'ship':
    s = cfg.ship
    anchors = tuple(int(a) for a in prepared['anchors'])
    model = torch_ship.SHIPViT(anchors, prepared['bank'], prompts=s.num_prompts,
                               prompt_weight=s.prompt_weight, bank_weight=s.bank_weight,
                               match_weight=s.match_weight, **kw)
    step = lambda m, x, y: torch_ship.train_step(m, x, y, lr=tr.lr, wd=tr.wd)
    desc = (f'references.torch_ship.SHIPViT (P={s.num_prompts}, '
            f'anchors={list(anchors)}, '
            f'bank={tuple(np.shape(prepared["bank"]))}, drop_path={cfg.model.drop_path}, adamw)')
  elif name == 'davpt':
    c = cfg.davpt
    extras = [e for e in ('k_bias', 'norm1', 'cls') if c[f'train_{e}']]
    model = torch_davpt.DAVPTViT(
        prepared['class_map'], num_proxies=int(prepared['num_proxies']), num_other=c.num_other,
        proxy_start=c.proxy_start, proxy_end=c.proxy_end, pool=cfg.model.pool,
        lambda_patch=c.lambda_patch, lambda_cls=c.lambda_cls, alpha=c.alpha, delta_pos=c.delta_pos,
        delta_neg=c.delta_neg, scale=c.scale, extra_trainable=extras, **kw)
    step = lambda m, x, y: torch_davpt.train_step(m, x, y, lr=tr.lr, wd=tr.wd,
                                                  clip_value=tr.grad_clip_value)
    desc = (f'references.torch_davpt.DAVPTViT (P={int(prepared["num_proxies"])}, '
            f'nP={c.num_other}, proxy layers {c.proxy_start}-{c.proxy_end}, pool={cfg.model.pool}, '
            f'drop_path={cfg.model.drop_path}, extras={extras}, adamw+clip)')
  else:
    raise ValueError(f'no PyTorch counterpart for {name!r}')
  return model, step, desc


def _check(name: str, ctx: dict, model) -> dict:
  """Copies the JAX params into `model`; compares logits and loss of one training-mode forward with
  drop path off (JAX: the same model cloned with drop_path=0; PyTorch: eval mode = no drop path).
  Both in float32 whatever dtype is timed: the check is of the function, not of its rounding."""
  import torch
  from prompt_jax.methods import base
  setup, cfg = ctx['setup'], ctx['cfg']
  params = jax.tree_util.tree_map(np.asarray, setup.params)
  model.load_jax(params)
  jm = setup.model.clone(drop_path=0.0, dtype=jnp.float32)
  b = {'image': jnp.asarray(ctx['x']), 'label': jnp.asarray(ctx['y']),
       'mask': jnp.ones(len(ctx['y']), bool)}
  (logits, out), mut = jm.apply({'params': setup.params}, b['image'], train=True,
                                rngs={'dropout': jax.random.PRNGKey(0)}, mutable=['aux'])
  loss_j, _ = setup.method.recipe.loss(base.LossInputs(logits, out, mut.get('aux', {}), b,
                                                       ctx['method_state'], cfg))
  xt = torch.as_tensor(ctx['x']).permute(0, 3, 1, 2).contiguous()
  yt = torch.as_tensor(ctx['y']).long()
  model.eval()
  with torch.no_grad():
    if hasattr(model, 'loss'):
      saved = {k: v.clone() for k, v in model.state_dict().items()}
      loss_t, logits_t, _ = model.loss(xt, yt)
      model.load_state_dict(saved)  # DA-VPT's loss updates its statistics buffers
    else:
      logits_t = model(xt)
      loss_t = torch.nn.functional.cross_entropy(logits_t, yt)
  model.train()
  lj = np.asarray(logits)
  return {'logits_max_abs_diff': float(np.abs(lj - logits_t.numpy()).max()),
          'logits_max_abs': float(np.abs(lj).max()),
          'loss_jax': float(loss_j), 'loss_torch': float(loss_t),
          'ok': bool(np.allclose(lj, logits_t.numpy(), atol=1e-4, rtol=1e-4) and
                     abs(float(loss_j) - float(loss_t)) < 1e-4 * max(1.0, abs(float(loss_j))))}


def _in_dtype(run, dtype: str):
  """`run` under CPU autocast for bfloat16 (matmuls in bf16, parameters and optimizer in float32):
  the PyTorch counterpart of our model.compute_dtype='bfloat16'; `run` itself for float32."""
  if dtype == 'float32':
    return run
  import torch

  def amp_run():
    with torch.autocast('cpu', dtype=getattr(torch, dtype)):
      return run()
  return amp_run


def torch_worker(name: str, cfg: dict, prepared: dict, variant: str, image: int, classes: int,
                 x: np.ndarray, y: np.ndarray, compile: bool = False,
                 measure_memory: bool = False, dtype: str = 'float32'):
  """The PyTorch counterpart's train step for method `name` as a `common.time_candidates` spec
  (eager, or `torch.compile`d with the first call's seconds as `first_call_s`), in `dtype`.
  measure_memory (eager, in a fresh process): `peak_increase_bytes`, the resident set's rise over
  two steps after the model and inputs exist, sampled (`common.peak_rss_increase`)."""
  import ml_collections
  import torch
  model, step, _ = _torch_model(name, ml_collections.ConfigDict(cfg), prepared, variant, image,
                                classes)
  xt = torch.as_tensor(x).permute(0, 3, 1, 2).contiguous()
  yt = torch.as_tensor(y).long()
  if not compile:
    run, info = _in_dtype(step(model, xt, yt), dtype), {'threads': torch.get_num_threads()}
    if measure_memory:
      info['peak_increase_bytes'] = bench.peak_rss_increase(lambda: (run(), run()))
    return run, info
  model.compile()  # torch.compile, mode default, in place
  run, first_s = bench.torch_compiled(lambda: _in_dtype(step(model, xt, yt), dtype))
  return run, {'first_call_s': first_s}


def _torch_row(name: str, ctx: dict, variant: str, image: int, classes: int, iters: int,
               dtype: str = 'float32') -> tuple[dict, dict]:
  """(row, worker kwargs): the PyTorch model's check, FLOPs and 1-thread timing, and the keyword
  arguments of `torch_worker` (picklable) for the caller to time with the JAX step."""
  import torch
  from references import torch_vit
  prepared = jax.tree_util.tree_map(np.asarray, ctx['setup'].prepared)
  model, step, desc = _torch_model(name, ctx['cfg'], prepared, variant, image, classes)
  row = {'torch_model': desc, 'torch_trainable_params': torch_vit.trainable_count(model),
         'torch_version': torch.__version__}
  try:
    row['check'] = _check(name, ctx, model)
  except Exception as e:
    row['check'] = f'failed: {type(e).__name__}: {e}'[:300]
  xt = torch.as_tensor(ctx['x']).permute(0, 3, 1, 2).contiguous()
  yt = torch.as_tensor(ctx['y']).long()
  run = _in_dtype(step(model, xt, yt), dtype)
  try:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
      run()
    row['torch_step_flops'] = float(fc.get_total_flops())  # matmul / conv / attention only
  except Exception as e:
    row['torch_step_flops'] = f'unavailable: {type(e).__name__}'
  default = torch.get_num_threads()
  try:
    torch.set_num_threads(1)
    row['torch_images_per_s_1thread'] = len(ctx['y']) / bench.time_fn(run, iters=iters)
  finally:
    torch.set_num_threads(default)
  row['torch_threads'] = default
  kwargs = dict(name=name, cfg=ctx['cfg'].to_dict(), prepared=prepared, variant=variant,
                image=image, classes=classes, x=ctx['x'], y=ctx['y'], dtype=dtype)
  return row, kwargs


def bench_one(name, module, variant, batch, image, iters, peak, dtype, with_torch,
              compile_torch=True, harness='process', env=None):
  row = {'method': name, 'model': f'ViT-{variant}', 'batch': batch, 'image': image, 'dtype': dtype}
  classes = 100
  kw = dict(module=module, variant=variant, batch=batch, image=image, classes=classes,
            dtype=dtype)
  try:
    ctx = _jax_context(**kw)
  except Exception as e:
    return {**row, 'skipped': f'{type(e).__name__}: {e}'[:300]}
  # the live step, and the same step with every token live in every block (what releases compute)
  specs = {'live': ('benchmarks.run', 'jax_worker', kw),
           'all_live': ('benchmarks.run', 'jax_worker', dict(kw, live_tokens=False))}
  tr = {}
  if with_torch:
    try:
      tr, torch_kw = _torch_row(name, ctx, variant, image, classes, iters, dtype)
      specs['torch'] = ('benchmarks.run', 'torch_worker',
                        dict(torch_kw, measure_memory=harness == 'process'))
      if compile_torch:
        specs['torch_compiled'] = ('benchmarks.run', 'torch_worker', dict(torch_kw, compile=True))
    except Exception as e:
      row['torch'] = f'skipped: {type(e).__name__}: {e}'[:300]
  del ctx
  try:
    times, infos = bench.time_candidates(specs, harness=harness, iters=iters, env=env)
  except RuntimeError as e:
    return {**row, 'skipped': str(e)[:300]}
  row['malloc_reuse'] = {k: info.get('malloc_reuse') for k, info in infos.items()}
  if 'peak_increase_bytes' in infos.get('torch', {}):  # PyTorch's counterpart of jax_memory
    row['torch_step_peak_increase_bytes'] = infos['torch']['peak_increase_bytes']
  secs = {k: float(np.median(v)) for k, v in times.items()}
  t = secs['live']
  live = infos['live']
  flops, cost = live['flops'], live['cost']
  row.update(trainable_params=live['trainable'], jax_images_per_s=batch / t, jax_step_flops=flops,
             jax_step_bytes_accessed=cost['bytes_accessed'],
             jax_flop_utilisation=flops / t / peak, jax_compile_s=live['compile_s'],
             jax_memory=live['memory'],
             roofline=bench.roofline(flops, cost['bytes_accessed'], batch),
             timing={k: bench.spread(v, batch) for k, v in times.items()})
  t_full, flops_full = secs['all_live'], infos['all_live']['flops']
  row.update(jax_images_per_s_all_live=batch / t_full, jax_step_flops_all_live=flops_full,
             jax_flop_utilisation_all_live=flops_full / t_full / peak,
             live_over_all_live=t_full / t)
  if not tr:
    return row
  torch_keys = [k for k in ('torch', 'torch_compiled') if k in secs]
  row.update(tr, torch_images_per_s=batch / secs['torch'],
             jax_over_torch=secs['torch'] / t,
             jax_over_torch_1thread=row['jax_images_per_s'] / tr['torch_images_per_s_1thread'],
             trainable_params_match=tr['torch_trainable_params'] == live['trainable'],
             best_torch=min(torch_keys, key=secs.get),
             jax_over_best_torch={
                 'median': min(secs[k] for k in torch_keys) / t,
                 'best': min(min(times[k]) for k in torch_keys) / min(times['live'])})
  if 'torch_compiled' in secs:
    first = infos['torch_compiled']['first_call_s']
    row.update(torch_compiled_images_per_s=batch / secs['torch_compiled'],
               torch_compiled_first_call_s=first,
               torch_compile_s=first - secs['torch_compiled'])
  return row


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--quick', action='store_true')
  ap.add_argument('--iters', type=int, default=3)
  ap.add_argument('--no_torch', action='store_true')
  ap.add_argument('--no_compile', action='store_true', help='skip the torch.compile rows')
  ap.add_argument('--variants', default='S/16,B/16', help='full run: comma-separated ViT variants')
  ap.add_argument('--dtype', default='', help="model.compute_dtype; '' = bfloat16 on an "
                  'accelerator, float32 on CPU (bfloat16 there times the avx512_bf16 path)')
  ap.add_argument('--methods', default=','.join(METHODS), help='comma-separated subset')
  ap.add_argument('--harness', default='process', choices=('process', 'inline'),
                  help='process: each candidate in its own process (common.time_candidates)')
  ap.add_argument('--env', default='', help='NAME=VALUE,...: added to the candidates\' '
                  'processes (e.g. OMP_WAIT_POLICY=PASSIVE, GLIBC_TUNABLES=glibc.malloc.hugetlb=1)')
  args = ap.parse_args()
  if not args.no_torch:
    torch_side.exit_if_problem('benchmarks.run')  # one line, not a crash in a candidate
  gpu = jax.default_backend() != 'cpu'
  dtype = args.dtype or ('bfloat16' if gpu else 'float32')
  grid = [('Mu/8', 8, 32)] if args.quick else [(v, 8, 224) for v in args.variants.split(',')]
  t0 = time.perf_counter()
  load_before = bench.load_average()
  peak = bench.matmul_peak_flops(1024 if args.quick else 2048, jnp.dtype(dtype))
  methods = {n: METHODS[n] for n in args.methods.split(',')}
  rows = [bench_one(n, m, v, b, i, args.iters, peak, dtype, not args.no_torch,
                    not args.no_compile, args.harness, bench.parse_env(args.env))
          for v, b, i in grid for n, m in methods.items()]
  print(json.dumps({'benchmark': 'suite', 'quick': args.quick, 'dtype': dtype,
                    'harness': args.harness, 'worker_env': bench.parse_env(args.env),
                    'matmul_peak_flops_per_s': peak, 'accelerators_assumed': bench.ACCELERATORS,
                    'rows': rows, 'wall_s': time.perf_counter() - t0,
                    'load_average_before': load_before, 'machine': bench.machine()},
                   indent=1, default=str))


if __name__ == '__main__':
  main()
