"""Timing helpers shared by the benchmark scripts (JSON out, nothing asserted)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import platform
import threading
import time
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import cpu_malloc
from prompt_jax.util.host import cpu_model


def parse_env(text: str) -> dict[str, str]:
  """'K=V,K2=V2' (a benchmark's --env) -> {K: V}; a value may hold '=' but not ','."""
  out = {}
  for item in filter(None, text.split(',')):
    k, sep, v = item.partition('=')
    if not sep or not k:
      raise ValueError(f'--env item {item!r}: expected NAME=VALUE')
    out[k] = v
  return out


def load_average() -> list[float]:
  """`uptime`'s 1 / 5 / 15-minute load averages: timings on a busy machine are not idle ones."""
  return [round(x, 2) for x in os.getloadavg()]


def cpu_flags(wanted: tuple[str, ...] = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')
              ) -> list[str]:
  """Which of `wanted` ISA extensions /proc/cpuinfo lists (the bf16 / AVX-512 paths need them)."""
  try:
    with open('/proc/cpuinfo') as f:
      flags = next((ln.split(':', 1)[1].split() for ln in f if ln.startswith('flags')), [])
  except OSError:
    flags = []
  return [w for w in wanted if w in flags]


def machine() -> dict[str, Any]:
  """Where the figures were taken, with the load average at the time of the call."""
  return {'platform': platform.platform(), 'python': platform.python_version(),
          'cpus': os.cpu_count(), 'cpu_model': cpu_model(), 'cpu_flags': cpu_flags(),
          'jax': jax.__version__, 'jax_backend': jax.default_backend(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'devices': [d.device_kind for d in jax.devices()], 'load_average': load_average()}


def median(xs: list[float]) -> float:
  return float(np.median(xs))


def time_fn(fn: Callable[[], Any], *, warmup: int = 2, iters: int = 5) -> float:
  """Median seconds per call of fn (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def time_rounds(fns: dict[str, Callable[[], Any]], *, warmup: int = 1, iters: int = 5
                ) -> dict[str, list[float]]:
  """Seconds of every call of each fn, timed round-robin (one call of each per round) so that a
  shared machine's changing load hits every candidate alike."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {k: [] for k in fns}
  for _ in range(iters):
    for k, fn in fns.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
  return times


# A candidate built in its own process: (module, function, keyword arguments). The function
# returns `run` (one blocking step) or `(run, info)` with `info` a picklable dict (FLOPs, compile
# seconds, ...). Everything it needs must be picklable: arrays, numbers, plain dicts.
Spec = tuple[str, str, dict[str, Any]]


def _build(spec: Spec) -> tuple[Callable[[], Any], dict[str, Any]]:
  module, fn, kwargs = spec
  out = getattr(importlib.import_module(module), fn)(**kwargs)
  return out if isinstance(out, tuple) else (out, {})


def _round_worker(conn, spec: Spec) -> None:
  """A candidate's process: build, say ready (with its info), then time `n` calls per request
  until asked for 0. Between requests it blocks on the pipe, so its threads do not run. Memory
  is set up as the trainer's (prompt_jax/util/cpu_malloc.py: PROMPT_JAX_MALLOC, for PyTorch too)."""
  try:
    malloc_reuse = cpu_malloc.maybe_apply()
    run, info = _build(spec)
  except BaseException as e:  # reported to the parent, which raises
    conn.send(('error', f'{type(e).__name__}: {e}'[:2000]))
    return
  conn.send(('ready', {**info, 'malloc_reuse': malloc_reuse}))
  while n := conn.recv():
    times = []
    for _ in range(n):
      t = time.perf_counter()
      run()
      times.append(time.perf_counter() - t)
    conn.send(times)


def time_candidates(specs: dict[str, Spec], *, harness: str = 'process', warmup: int = 1,
                    iters: int = 5, env: dict[str, str] | None = None
                    ) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]]]:
  """(seconds of every timed call, info) per candidate, timed round-robin as `time_rounds`.

  harness='process' builds each candidate in its own spawned process (one after another, so
  builds and compiles do not overlap) and times one call at a time while the others block on a
  pipe: no candidate's threads (PyTorch's spinning OpenMP threads, which cost the XLA step
  10-20% on 2 cores when both run in one process), caches or allocator
  state share the cores with the one being timed. `env` is added to the workers' environment
  (e.g. OMP_WAIT_POLICY, GLIBC_TUNABLES: read at process start).
  harness='inline' builds and times everything in this process (the earlier harness; `env` is
  then an error).
  """
  if harness == 'inline':
    if env:
      raise ValueError(f'env {env} needs harness=process (read when a process starts)')
    built = {k: _build(spec) for k, spec in specs.items()}
    times = time_rounds({k: r for k, (r, _) in built.items()}, warmup=warmup, iters=iters)
    return times, {k: info for k, (_, info) in built.items()}
  if harness != 'process':
    raise ValueError(f"harness must be 'process' or 'inline', not {harness!r}")
  ctx = multiprocessing.get_context('spawn')  # fork after JAX / PyTorch started threads is unsafe
  saved = {k: os.environ.get(k) for k in env or {}}
  os.environ.update(env or {})  # inherited by the spawned workers
  workers, infos = {}, {}
  try:
    for k, spec in specs.items():
      conn, child = ctx.Pipe()
      proc = ctx.Process(target=_round_worker, args=(child, spec), daemon=True)
      proc.start()
      child.close()
      workers[k] = (proc, conn)
      try:
        status, payload = conn.recv()
      except EOFError:
        proc.join(5)
        raise RuntimeError(f'benchmark candidate {k!r} died while building '
                           f'(exit code {proc.exitcode})') from None
      if status == 'error':
        raise RuntimeError(f'benchmark candidate {k!r} failed to build: {payload}')
      infos[k] = payload
    for _, conn in workers.values():
      if warmup:
        conn.send(warmup)
        conn.recv()
    times = {k: [] for k in workers}
    for _ in range(iters):
      for k, (_, conn) in workers.items():
        conn.send(1)
        times[k] += conn.recv()
    return times, infos
  finally:
    for proc, conn in workers.values():
      try:
        conn.send(0)
      except (BrokenPipeError, OSError):
        pass
      proc.join(60)
      if proc.is_alive():
        proc.kill()
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def rss_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_increase(fn: Callable[[], Any], interval_s: float = 0.002) -> int:
  """Bytes by which this process's resident set rose above its level before `fn()`, at its
  highest while `fn` ran (sampled every `interval_s` by a thread; Linux). Unlike `ru_maxrss`, a
  higher peak earlier in the process (building a model) does not hide it."""
  base, peak, done = rss_bytes(), [0], threading.Event()

  def sample():
    while not done.is_set():
      peak[0] = max(peak[0], rss_bytes())
      time.sleep(interval_s)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  try:
    fn()
  finally:
    done.set()
    sampler.join()
  return max(peak[0], rss_bytes()) - base


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int = 1, iters: int = 5
                     ) -> dict[str, float]:
  """Median seconds per call of each fn over `time_rounds`."""
  return {k: float(np.median(v)) for k, v in time_rounds(fns, warmup=warmup, iters=iters).items()}


def spread(times: list[float], batch: int) -> dict[str, float]:
  """images/s at the fastest and the median round (the fastest is the least disturbed by load)."""
  return {'images_per_s_best': batch / min(times), 'images_per_s_median': batch / median(times),
          'rounds': len(times)}


def torch_compiled(run_factory: Callable[[], Callable[[], Any]]) -> tuple[Callable[[], Any], float]:
  """(run, first-call seconds) of a `torch.compile`d step: `run_factory()` must build the step on a
  model it has already `.compile()`d (mode default). The first call traces and compiles; what it
  costs beyond a step is the compile time, reported apart from the step's."""
  run = run_factory()
  t = time.perf_counter()
  run()
  return run, time.perf_counter() - t


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32) -> float:
  """Measured FLOP/s of a square matmul on the default device (the 'peak' we compare to)."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  secs = time_fn(lambda: f(a).block_until_ready(), warmup=2, iters=5)
  return 2 * n ** 3 / secs


def compiled_cost(compiled) -> dict[str, float]:
  """XLA's cost analysis of a compiled step: {'flops', 'bytes_accessed'} (nan where missing)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  cost = cost or {}
  return {'flops': float(cost.get('flops', float('nan'))),
          'bytes_accessed': float(cost.get('bytes accessed', float('nan')))}


def compiled_flops(compiled) -> float:
  return compiled_cost(compiled)['flops']


# Peak bf16 dense matmul FLOP/s and memory bandwidth of the accelerators the roofline estimates
# assume (vendor figures, not measured here):
# - H100 SXM5: 989.4 TFLOP/s bf16 dense (NVIDIA H100 Tensor Core GPU datasheet: 1,979 with 2:4
#   sparsity), 3.35 TB/s HBM3.
# - TPU v5e: 197 TFLOP/s bf16, 819 GB/s HBM2 (Google Cloud TPU v5e system architecture page).
ACCELERATORS = {'h100_sxm': {'peak_flops_per_s': 989.4e12, 'bytes_per_s': 3.35e12},
                'tpu_v5e': {'peak_flops_per_s': 197e12, 'bytes_per_s': 819e9}}


def roofline(flops: float, bytes_accessed: float, batch: int) -> dict[str, dict[str, float]]:
  """Per accelerator: the step's time bound max(flops / peak, bytes / bandwidth), which bound
  binds, and the implied img/s (an upper bound: perfect overlap, no launch or input cost)."""
  out = {}
  for name, a in ACCELERATORS.items():
    t_flops = flops / a['peak_flops_per_s']
    t_bytes = bytes_accessed / a['bytes_per_s']
    t = max(t_flops, t_bytes)
    out[name] = {'step_s': t, 'images_per_s': batch / t if t > 0 else float('nan'),
                 'bound': 'compute' if t_flops >= t_bytes else 'memory',
                 'arithmetic_intensity': flops / bytes_accessed if bytes_accessed else float('nan')}
  return out


def trainer_state(setup: Any):
  """(trainable, frozen, tx, state) of the trainer for `setup` (prompt_jax.train.trainer.Setup)."""
  from prompt_jax.train import optim
  from prompt_jax.train import steps
  from prompt_jax.util import tree
  cfg = setup.config
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, _ = optim.make_optimizer(cfg.train, trainable, 10)
  state = steps.initial_state(trainable, tx, setup.method.recipe, setup.prepared, cfg,
                              jax.random.PRNGKey(0))
  return trainable, frozen, tx, state


def compile_trainer_step(setup: Any, x: np.ndarray, y: np.ndarray):
  """The trainer's own jitted train step for `setup` (prompt_jax.train.trainer.Setup) on one fixed
  batch.

  Returns (run, compiled, compile_seconds, trainable, state): `run()` does one blocking step.
  """
  from prompt_jax.train import steps
  trainable, frozen, tx, state = trainer_state(setup)
  b = {'image': jnp.asarray(x), 'label': jnp.asarray(y), 'mask': jnp.ones(len(y), bool)}
  t = time.perf_counter()
  step = steps.make_train_step(setup.model, setup.method.recipe, setup.config, tx)
  compiled = jax.jit(step).lower(state, frozen, b).compile()
  compile_s = time.perf_counter() - t
  holder = {'s': state}

  def run():
    holder['s'], m = compiled(holder['s'], frozen, b)
    m['loss'].block_until_ready()

  return run, compiled, compile_s, trainable, state
