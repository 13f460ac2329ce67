"""The trainer: frozen backbone + trainable subtree, masked optax, sharded jit, orbax checkpoints.

  results = train_and_evaluate(config, workdir)

Gradients are taken only with respect to the trainable subtree (`jax.value_and_grad` over it), so
XLA never forms backbone weight gradients; the frozen params are a separate jit argument and never
change. The data order depends only on (seed, epoch) and the dropout rng on (seed, step), so a
killed run restored from its last checkpoint reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import time
from typing import Any
from collections.abc import Iterator

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from prompt_jax import backbone as backbone_lib
from prompt_jax import checkpointing
from prompt_jax import features as features_lib
from prompt_jax import optim
from prompt_jax import sharding as shard_lib
from prompt_jax import steps as steps_lib
from prompt_jax import tree
from prompt_jax import validation
from prompt_jax.data import registry as data_registry
from prompt_jax.methods import base

Config = ml_collections.ConfigDict


class NonFiniteLossError(FloatingPointError):
  """Raised when a training loss is NaN/inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class Setup:
  """Everything built before training."""

  config: Config
  method: base.Method
  source: Any
  model: Any
  params: dict[str, Any]
  prepared: Any
  ctx: base.PrepareContext


def _cached(path: str, fn):
  if os.path.exists(path):
    with open(path, 'rb') as f:
      return pickle.load(f)
  value = fn()
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    pickle.dump(value, f)
  os.replace(tmp, path)
  return value


def build(cfg: Config, workdir: str) -> Setup:
  """Data source, method, backbone weights, prepared method state, the model and its params."""
  validation.check(cfg)
  method = base.get(cfg.method)
  source = data_registry.get_source(cfg.data)
  backbone_params = backbone_lib.load(method, cfg)
  bb_model = backbone_lib.backbone_model(method, cfg)

  def feats(split: str, select, **kw):
    return features_lib.extract(bb_model, backbone_params, source, split, select=select, **kw)

  ctx = base.PrepareContext(config=cfg, source=source, backbone=bb_model,
                            backbone_params=backbone_params, workdir=workdir, features=feats)
  prepared = None
  if method.prepare is not None:
    os.makedirs(workdir, exist_ok=True)
    prepared = _cached(os.path.join(workdir, 'prepared.pkl'), lambda: method.prepare(ctx))
  model = method.model(cfg, source.num_classes, prepared)
  params = backbone_lib.init_with(model, cfg, backbone_params)
  params = method.init_params(params, prepared, cfg)
  if cfg.prompt_init.name != 'default':
    initializer = base.get_initializer(cfg.prompt_init.name)
    params = initializer(params, ctx, method.prompt_slots(cfg, prepared), cfg)
  return Setup(cfg, method, source, model, params, prepared, ctx)


# ---------------------------------------------------------------- evaluation


def evaluate(setup: Setup, eval_fn, state: Any, frozen: Any, split: str, batch_size: int,
             bsharding) -> dict[str, float]:
  """Top-1 and loss over a whole split (padding rows masked out)."""
  total = None
  for batch in setup.source.iterate(split, batch_size, process_index=jax.process_index(),
                                    process_count=jax.process_count()):
    m = eval_fn(state['trainable'], frozen, shard_lib.put_batch(batch, bsharding))
    total = m if total is None else total.merge(m)
  if total is None:
    raise ValueError(f'split {split!r} is empty')
  out = total.compute()
  return {'accuracy': float(out['accuracy']), 'loss': float(out['loss'])}


def summarize(history: list[dict[str, Any]], eval_splits: tuple[str, ...], val_split: str
              ) -> dict[str, Any]:
  """final (last eval), val_selected (test at the best val epoch) and best_epoch (max test:
  selection on test, as several papers report; labelled so)."""
  res: dict[str, Any] = {'final': history[-1] if history else {}}
  test_splits = [s for s in eval_splits if s != val_split]
  if val_split and history:
    best = max(history, key=lambda h: (h.get(val_split, -1.0), -h['epoch']))
    res['val_selected'] = {'epoch': best['epoch'], val_split: best[val_split],
                           **{s: best.get(s) for s in test_splits}}
  for s in test_splits:
    if history:
      best = max(history, key=lambda h: (h.get(s, -1.0), -h['epoch']))
      res[f'best_epoch_selected_on_{s}'] = {'epoch': best['epoch'], s: best[s]}
  return res


# ---------------------------------------------------------------- loop


def _train_batches(setup: Setup, epoch: int, skip: int, steps_per_epoch: int) -> Iterator[Any]:
  cfg = setup.config
  it = setup.source.iterate(cfg.data.train_split, cfg.train.batch_size,
                            shuffle_seed=cfg.seed * 1_000_003 + epoch, drop_remainder=True,
                            process_index=jax.process_index(), process_count=jax.process_count())
  for i, batch in enumerate(it):
    if i >= steps_per_epoch:
      return
    if i >= skip:
      yield batch


def train_and_evaluate(cfg: Config, workdir: str) -> dict[str, Any]:
  """Trains `cfg.method` on `cfg.data`, evaluating every `eval_every_epochs` and at the end.

  Writes to workdir: checkpoints/ (orbax, resumable), prepared.pkl (method preparation cache),
  TensorBoard summaries, results.json, and (train.export) tuned/ (see prompt_jax.export).
  """
  shard_lib.maybe_initialize_distributed(cfg.mesh)
  os.makedirs(workdir, exist_ok=True)
  setup = build(cfg, workdir)
  tcfg = cfg.train
  n_train = setup.source.splits[cfg.data.train_split]
  steps_per_epoch = n_train // tcfg.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size {tcfg.batch_size} exceeds the {n_train} training examples')
  total_steps = steps_per_epoch * tcfg.epochs
  if tcfg.max_steps > 0:
    total_steps = min(total_steps, tcfg.max_steps)

  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, schedule = optim.make_optimizer(tcfg, trainable, steps_per_epoch)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': tx.init(trainable),
           'method_state': setup.method.init_state(setup.prepared, cfg),
           'rng': jax.random.PRNGKey(cfg.seed + 1)}

  mesh = shard_lib.make_mesh(cfg.mesh)
  rep, bsh = shard_lib.replicated(mesh), shard_lib.batch_sharding(mesh)
  state_sh = jax.tree_util.tree_map(lambda _: rep, state)
  frozen_sh = shard_lib.frozen_shardings(mesh, frozen)
  state = jax.device_put(state, state_sh)
  frozen = jax.device_put(frozen, frozen_sh)
  train_step = jax.jit(steps_lib.make_train_step(setup.model, setup.method, cfg, tx),
                       in_shardings=(state_sh, frozen_sh, bsh),
                       out_shardings=(state_sh, rep), donate_argnums=(0,))
  eval_step = jax.jit(steps_lib.make_eval_step(setup.model))

  mngr = checkpointing.manager(workdir, tcfg.keep_checkpoints)
  meta: dict[str, Any] = {'history': []}
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
  restored = checkpointing.restore(mngr, abstract)
  if restored is not None:
    state = jax.device_put(restored[0], state_sh)
    meta = restored[1]
    logging.info('resumed from step %d', int(state['step']))

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  n_train_params = tree.count(trainable)
  writer.write_hparams({'method': cfg.method, 'trainable_params': n_train_params,
                        'frozen_params': tree.count(frozen)})
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  eval_splits = tuple(cfg.data.eval_splits)

  def run_eval(epoch: int) -> None:
    row: dict[str, Any] = {'epoch': epoch, 'step': int(jax.device_get(state['step']))}
    for split in eval_splits:
      m = evaluate(setup, eval_step, state, frozen, split, tcfg.eval_batch_size, bsh)
      row[split] = m['accuracy']
      writer.write_scalars(row['step'], {f'{split}/accuracy': m['accuracy'],
                                         f'{split}/loss': m['loss']})
    meta['history'].append(row)
    logging.info('eval %s', row)

  step = int(jax.device_get(state['step']))
  loss = float('nan')
  t0 = time.time()
  while step < total_steps:
    epoch, skip = divmod(step, steps_per_epoch)
    step_at_start = step
    for batch in _train_batches(setup, epoch, skip, steps_per_epoch):
      state, metrics = train_step(state, frozen, shard_lib.put_batch(batch, bsh))
      step += 1
      loss = float(metrics['loss'])
      if not np.isfinite(loss):
        mngr.wait_until_finished()
        mngr.close()
        raise NonFiniteLossError(
            f'loss is {loss} at step {step} (epoch {epoch}); training stopped. The last good '
            f'checkpoint (step {mngr.latest_step()}) is kept in {workdir}/checkpoints; lower '
            'train.lr or check the data normalisation, then rerun to resume from it.')
      report(step)
      if step % tcfg.log_every_steps == 0 or step == total_steps:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        scalars['lr'] = float(schedule(step - 1))
        writer.write_scalars(step, {f'train/{k}': v for k, v in scalars.items()})
      if step % tcfg.checkpoint_every_steps == 0:
        checkpointing.save(mngr, state, meta)
      if step >= total_steps:
        break
    if step < total_steps and step % steps_per_epoch:
      raise RuntimeError(
          f'split {cfg.data.train_split!r} ran out after {skip + step - step_at_start} batches '
          f'of epoch {epoch}; the source declared {n_train} examples = {steps_per_epoch} batches '
          f'of {tcfg.batch_size}. The dataset is smaller than its declared split size.')
    if step % steps_per_epoch == 0:  # epoch finished
      epoch_done = step // steps_per_epoch
      ms = jax.device_get(state['method_state'])
      new_ms = setup.method.epoch_end(ms, epoch_done, cfg)
      if new_ms is not ms:
        state = dict(state, method_state=jax.device_put(new_ms, rep))
      if epoch_done % tcfg.eval_every_epochs == 0 and step < total_steps:
        run_eval(epoch_done)
        checkpointing.save(mngr, state, meta)
  if not meta['history'] or meta['history'][-1]['step'] != step:
    run_eval(-(-step // steps_per_epoch))
  checkpointing.save(mngr, state, meta)
  mngr.wait_until_finished()
  mngr.close()

  results = {
      'method': cfg.method, 'variant': setup.method.label(cfg), 'task': cfg.data.get('task', ''),
      'seed': cfg.seed, 'num_classes': setup.source.num_classes,
      'splits': {'train': cfg.data.train_split, 'val': cfg.data.val_split or None,
                 'eval': list(eval_splits)},
      'steps': step, 'trainable_params': n_train_params,
      'train_seconds_this_run': time.time() - t0, 'last_train_loss': loss,
      **summarize(meta['history'], eval_splits, cfg.data.val_split), 'history': meta['history'],
      'config': json.loads(cfg.to_json()),
  }
  for split in eval_splits:  # convenience: final accuracy per split at top level
    results[split] = meta['history'][-1][split]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=1)
  if tcfg.export:  # on every process: the orbax save is collective (process 0 writes)
    from prompt_jax import export
    export.export_tuned(os.path.join(workdir, 'tuned'), jax.device_get(state['trainable']),
                        jax.device_get(frozen), cfg, setup.prepared)
  writer.flush()
  return results
