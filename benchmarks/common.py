"""Timing helpers shared by the benchmark scripts (JSON out, nothing asserted)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def machine() -> dict[str, Any]:
  return {'platform': platform.platform(), 'python': platform.python_version(),
          'cpus': os.cpu_count(), 'jax': jax.__version__, 'jax_backend': jax.default_backend(),
          'devices': [d.device_kind for d in jax.devices()]}


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


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32) -> float:
  """Measured FLOP/s of a square matmul on the default device (the 'peak' we compare to)."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  secs = time_fn(lambda: f(a).block_until_ready(), warmup=2, iters=5)
  return 2 * n ** 3 / secs


def compiled_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get('flops', float('nan'))) if cost else float('nan')


def compile_trainer_step(setup: Any, x: np.ndarray, y: np.ndarray):
  """The trainer's own jitted train step for `setup` (prompt_jax.train.Setup) on one fixed batch.

  Returns (run, compiled, compile_seconds, trainable, state): `run()` does one blocking step.
  """
  from prompt_jax import optim, steps, tree
  cfg = setup.config
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, _ = optim.make_optimizer(cfg.train, trainable, 10)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': tx.init(trainable),
           'method_state': setup.method.init_state(setup.prepared, cfg),
           'rng': jax.random.PRNGKey(0)}
  b = {'image': jnp.asarray(x), 'label': jnp.asarray(y), 'mask': jnp.ones(len(y), bool)}
  t = time.perf_counter()
  step = steps.make_train_step(setup.model, setup.method, cfg, tx)
  compiled = jax.jit(step).lower(state, frozen, b).compile()
  compile_s = time.perf_counter() - t
  holder = {'s': state}

  def run():
    holder['s'], m = compiled(holder['s'], frozen, b)
    m['loss'].block_until_ready()

  return run, compiled, compile_s, trainable, state
