"""Grid trials one at a time vs vmapped over a trial axis. Prints JSON.

  python -m benchmarks.grid_trials [--variant=S/16 --image_size=224 --batch=8 --trials=4]
  python -m benchmarks.grid_trials --quick          # Mu/8 at 32px, batch 32 (the tests' model)

A VPT grid's trials share the frozen backbone and the architecture and differ only in (lr, wd).
`sequential`: what the sweep does, one jitted VPT-deep train step per trial with its lr / wd as
constants (one compile each). `vmapped`: one step `jax.vmap`-ed over a leading trial axis of the
trainable state and optimizer state, lr / wd as per-trial arrays (`optax.inject_hyperparams`),
the frozen backbone and the batch shared (read once per step for all trials). Both are timed on
the same batch; `check` compares trial i of the vmapped step with the sequential trial i after two
steps. `trials_per_hour` assumes `--steps_per_trial` steps per trial (VPT on VTAB-1k: 100 epochs x
6 steps of 128 on train800 = 600) plus the compiles. XLA's cost analysis gives FLOPs and bytes
accessed per step for one trial and for the vmapped T trials.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common


def _sgd(learning_rate, weight_decay):
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=0.9))


def _step_fn(model, tx):
  from prompt_jax.util import tree

  def step(state, frozen, batch):
    rng = jax.random.fold_in(state['rng'], state['step'])

    def loss_fn(trainable):
      logits, _ = model.apply({'params': tree.merge(trainable, frozen)}, batch['image'],
                              train=True, rngs={'dropout': rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state['trainable'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['trainable'])
    return dict(state, step=state['step'] + 1, opt_state=opt_state,
                trainable=optax.apply_updates(state['trainable'], updates)), loss

  return step


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--variant', default='S/16')
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--num_prompts', type=int, default=50)
  p.add_argument('--num_classes', type=int, default=100)
  p.add_argument('--trials', type=int, default=4)
  p.add_argument('--iters', type=int, default=3)
  p.add_argument('--steps_per_trial', type=int, default=600)
  p.add_argument('--quick', action='store_true', help='Mu/8 at 32px, batch 32')
  args = p.parse_args(argv)
  if args.quick:
    args.variant, args.image_size, args.batch, args.num_prompts = 'Mu/8', 32, 32, 8
  from prompt_jax.checkpoints import backbone
  from prompt_jax.util import tree
  from prompt_jax.configs import vpt_vtab
  from prompt_jax.methods import base
  cfg = vpt_vtab.get_config('cifar100')
  cfg.unlock()
  cfg.model.variant, cfg.data.image_size = args.variant, args.image_size
  cfg.vpt.num_prompts = args.num_prompts
  cfg.lock()
  method = base.get('vpt')
  model = method.build(cfg, args.num_classes, None)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), backbone.dummy_images(cfg))['params']
  trainable, frozen = tree.split(params, *method.trainable_patterns(cfg))
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.normal(size=(args.batch, args.image_size, args.image_size, 3)),
                                jnp.float32),
           'label': jnp.asarray(rng.integers(0, args.num_classes, args.batch), jnp.int32)}
  grid = [(lr, wd) for lr in (0.5, 0.1, 0.05, 0.01) for wd in (1e-3, 0.0)][:args.trials]
  state0 = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
            'rng': jax.random.PRNGKey(1)}

  # One at a time: a fresh jit per trial, lr / wd baked in (as the trainer builds its step).
  seq = {'compile_s': [], 'step_s': [], 'after_2_steps': []}
  for lr, wd in grid:
    tx = _sgd(lr, wd)
    state = dict(state0, opt_state=tx.init(trainable))
    t = time.perf_counter()
    compiled = jax.jit(_step_fn(model, tx)).lower(state, frozen, batch).compile()
    seq['compile_s'].append(time.perf_counter() - t)
    seq['cost'] = common.compiled_cost(compiled)
    s = state
    for _ in range(2):
      s, _ = compiled(s, frozen, batch)
    seq['after_2_steps'].append(s['trainable'])
    seq['step_s'].append(common.time_fn(
        lambda c=compiled, st=state: jax.block_until_ready(c(st, frozen, batch)), warmup=1,
        iters=args.iters))

  # Vmapped: one program for all trials.
  tx = optax.inject_hyperparams(_sgd)(learning_rate=0.0, weight_decay=0.0)
  states = []
  for lr, wd in grid:
    opt_state = tx.init(trainable)
    opt_state.hyperparams['learning_rate'] = jnp.asarray(lr, jnp.float32)
    opt_state.hyperparams['weight_decay'] = jnp.asarray(wd, jnp.float32)
    states.append(dict(state0, opt_state=opt_state))
  stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
  vstep = jax.vmap(_step_fn(model, tx), in_axes=(0, None, None))
  t = time.perf_counter()
  vcompiled = jax.jit(vstep).lower(stacked, frozen, batch).compile()
  v_compile = time.perf_counter() - t
  s = stacked
  for _ in range(2):
    s, _ = vcompiled(s, frozen, batch)
  err = max(float(jnp.max(jnp.abs(a - b[i])))
            for i, seq_tr in enumerate(seq['after_2_steps'])
            for a, b in zip(jax.tree_util.tree_leaves(seq_tr),
                            jax.tree_util.tree_leaves(s['trainable'])))
  v_step = common.time_fn(lambda: jax.block_until_ready(vcompiled(stacked, frozen, batch)),
                          warmup=1, iters=args.iters)

  n, steps = len(grid), args.steps_per_trial
  seq_hour = 3600 * n / (sum(seq['compile_s']) + steps * sum(seq['step_s']))
  vmap_hour = 3600 * n / (v_compile + steps * v_step)
  vcost = common.compiled_cost(vcompiled)
  out = {
      'benchmark': 'grid_trials', 'command': 'python -m benchmarks.grid_trials ' +
      ' '.join(argv if argv is not None else os.sys.argv[1:]),
      'machine': common.machine(), 'uptime_load': os.getloadavg(),
      'variant': args.variant, 'image_size': args.image_size, 'batch': args.batch,
      'num_prompts': args.num_prompts, 'trials': n, 'steps_per_trial': steps,
      'sequential': {'compile_s_per_trial': float(np.mean(seq['compile_s'])),
                     'step_s_per_trial': float(np.mean(seq['step_s'])),
                     'trials_per_hour': seq_hour, **{f'per_trial_{k}': v
                                                     for k, v in seq['cost'].items()}},
      'vmapped': {'compile_s': v_compile, 'step_s_all_trials': v_step,
                  'trials_per_hour': vmap_hour, **{f'all_trials_{k}': v
                                                   for k, v in vcost.items()}},
      'speedup_trials_per_hour': vmap_hour / seq_hour,
      'bytes_per_trial_ratio': vcost['bytes_accessed'] / n / seq['cost']['bytes_accessed'],
      'flops_per_trial_ratio': vcost['flops'] / n / seq['cost']['flops'],
      'check_max_abs_diff_after_2_steps': err,
  }
  print(json.dumps(out, indent=1))
  return out


if __name__ == '__main__':
  main()
