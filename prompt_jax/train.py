"""The trainer: frozen backbone + trainable subtree, masked optax, sharded jit, orbax checkpoints.

  results = train_and_evaluate(config, workdir)

Gradients are taken only with respect to the trainable subtree (`jax.value_and_grad` over it), so
XLA never forms backbone weight gradients; the frozen params are a separate jit argument and never
change. The data order depends only on (seed, epoch) and the dropout rng on (seed, step), so a
killed run restored from its last checkpoint reaches the same result as an uninterrupted one.

A run is what its config says (prompt_jax/workdir.py, checkpointing.py, validation.py):
- the config is validated before anything loads; one process writes a workdir (writer.lock);
- a workdir holding a run of another config or backbone is an error unless
  `train.allow_config_change`; the method's preparation is cached in workdir/prepared.npz under a
  key of the config fields it reads and the backbone digest;
- each step computes on device whether its loss and updated state are finite; the host reads those
  flags at log, checkpoint and eval steps only (no per-step sync), so a non-finite state is never
  saved: training stops naming the first bad step and keeps the newest checkpoint whose parameters
  give a finite loss (`NonFiniteError`), and an unchanged rerun is refused (it would reach the
  same step);
- SIGTERM / SIGINT save a checkpoint of the current step and raise `Interrupted` (the CLI exits
  with 128 + the signal number); a rerun resumes from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any
from collections.abc import Iterator

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from prompt_jax import backbone as backbone_lib
from prompt_jax import checkpointing
from prompt_jax import features as features_lib
from prompt_jax import inputs
from prompt_jax import optim
from prompt_jax import progress
from prompt_jax import sharding as shard_lib
from prompt_jax import steps as steps_lib
from prompt_jax import tree
from prompt_jax import treeio
from prompt_jax import validation
from prompt_jax import workdir as workdir_lib
from prompt_jax.checkpointing import NonFiniteError
from prompt_jax.data import registry as data_registry
from prompt_jax.methods import base

Config = ml_collections.ConfigDict
PREPARED = 'prepared.npz'


class Interrupted(Exception):
  """SIGTERM / SIGINT stopped training after the state of `step` was checkpointed."""

  def __init__(self, signum: int, step: int, workdir: str):
    self.signum, self.step = signum, step
    super().__init__(f'{signal.Signals(signum).name}: stopped after saving the checkpoint of step '
                     f'{step} in {workdir}; rerun the same command to resume from it')


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
  backbone_digest: str


def prepare_cached(method: base.Method, ctx: base.PrepareContext) -> Any:
  """`method.prepare(ctx)`, cached in workdir/prepared.npz (`treeio`, no pickle) under the key of
  `method.prepare_keys` (none declared: the whole config) / `prepare_files` and the backbone
  digest; a cache of other inputs is recomputed (the changed inputs are logged). Returns the stored
  form (numpy arrays) both times."""
  keys = method.prepare_keys or tuple(ctx.config.keys())  # undeclared: the whole config
  key, inputs = workdir_lib.inputs_key(ctx.config, keys, ctx.backbone_digest,
                                       method.prepare_files)
  path = epath.Path(ctx.workdir) / PREPARED
  if path.exists():
    try:
      cached = treeio.load(str(path))
    except Exception as e:  # a damaged cache is only a cache
      logging.warning('%s does not load (%s): preparing again', path, e)
    else:
      if cached.get('key') == key:
        return cached['value']
      logging.info('%s was prepared from other inputs (%s): preparing again', path,
                   sorted(workdir_lib.diff(cached.get('inputs', {}), inputs)))
  value = method.prepare(ctx)
  if jax.process_index() == 0:
    treeio.save(str(path), {'key': key, 'inputs': inputs, 'value': value})
  return treeio.loads(treeio.dumps(value))


def build(cfg: Config, workdir: str) -> Setup:
  """Data source, method, backbone weights, prepared method state, the model and its params.

  Validates the config first, and checks the loaded backbone against the workdir's record."""
  validation.check(cfg, num_devices=jax.device_count())
  method = base.get(cfg.method)
  source = data_registry.get_source(cfg.data)
  validation.check_splits(cfg, source.splits)
  backbone_params = backbone_lib.load(method, cfg)
  digest = tree.digest(backbone_params)
  workdir_lib.check_backbone(workdir, cfg, digest)  # the config half ran before any work
  bb_model = backbone_lib.backbone_model(method, cfg)

  def feats(split: str, select, **kw):
    return features_lib.extract(bb_model, backbone_params, source, split, select=select, **kw)

  ctx = base.PrepareContext(config=cfg, source=source, backbone=bb_model,
                            backbone_params=backbone_params, workdir=workdir, features=feats,
                            backbone_digest=digest)
  prepared = prepare_cached(method, ctx) if method.prepare is not None else None
  model = method.model(cfg, source.num_classes, prepared)
  params = backbone_lib.init_with(model, cfg, backbone_params)
  params = method.init_params(params, prepared, cfg)
  if cfg.prompt_init.name != 'default':
    initializer = base.get_initializer(cfg.prompt_init.name)
    params = initializer(params, ctx, method.prompt_slots(cfg, prepared), cfg)
  return Setup(cfg, method, source, model, params, prepared, ctx, digest)


# ---------------------------------------------------------------- evaluation


def evaluate(setup: Setup, eval_fn, state: Any, frozen: Any, split: str, batch_size: int,
             bsharding, workdir: str = '') -> dict[str, float]:
  """Top-1 and loss over a whole split (padding rows masked out). Device path
  (`inputs.device_cached`): the split is decoded once per run and `eval_fn` normalises."""
  total = None
  if inputs.device_cached(setup.config, setup.source):
    batches = inputs.eval_batches(setup.source, setup.config, split, batch_size, workdir)
  else:
    batches = setup.source.iterate(split, batch_size, process_index=jax.process_index(),
                                   process_count=jax.process_count())
  for batch in progress.bar(batches, total=-(-setup.source.splits[split] // batch_size),
                            desc=f'eval {split}', unit='batch', leave=False):
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


def _train_batches(setup: Setup, epoch: int, skip: int, steps_per_epoch: int,
                   labels: np.ndarray | None) -> Iterator[Any]:
  """Epoch `epoch` from batch `skip` on: index batches (device path, `labels` given) or host
  batches of images."""
  cfg = setup.config
  if labels is not None:
    it = inputs.index_batches(setup.source, cfg, labels, epoch)
  else:
    it = setup.source.iterate(cfg.data.train_split, cfg.train.batch_size,
                              shuffle_seed=inputs.shuffle_seed(cfg, epoch),
                              drop_remainder=cfg.train.drop_last,
                              process_index=jax.process_index(),
                              process_count=jax.process_count())
  for i, batch in enumerate(it):
    if i >= steps_per_epoch:
      return
    if i >= skip:
      yield batch


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[dict[str, int]]:
  """While the block runs, SIGTERM / SIGINT are recorded in the yielded dict ({'signum': n})
  instead of stopping the process; a second one raises KeyboardInterrupt at once. Handlers can
  only be set from the main thread: elsewhere the signals keep their default behaviour."""
  got: dict[str, int] = {}
  if threading.current_thread() is not threading.main_thread():
    yield got
    return

  def handler(signum, frame):
    del frame
    if got:
      raise KeyboardInterrupt(f'second signal ({signal.Signals(signum).name})')
    got['signum'] = signum
    logging.warning('%s: saving a checkpoint after this step, then stopping (send it again to stop '
                    'at once)', signal.Signals(signum).name)

  old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield got
  finally:
    for s, h in old.items():
      signal.signal(s, h)


def _stop_requested(got: dict[str, int], at_log_step: bool) -> bool:
  """A stop signal arrived. Several processes agree on it at log steps only (one collective)."""
  if jax.process_count() == 1:
    return bool(got)
  if not at_log_step:
    return False
  from jax.experimental import multihost_utils
  return bool(np.max(multihost_utils.process_allgather(np.int32(bool(got)))))


def _first_nonfinite(pending: list[tuple[int, dict[str, jax.Array]]]) -> tuple[int | None, float]:
  """(the first step whose metrics['finite'] is False, its loss), or (None, the last step's
  loss): one host read of the device-side flags of `pending` [(step, metrics)]."""
  got = jax.device_get([(m['finite'], m['loss']) for _, m in pending])
  for (step, _), (ok, loss) in zip(pending, got):
    if not ok:
      return step, float(loss)
  return None, float(got[-1][1])


def _nonfinite_message(cfg: Config, workdir: str, bad: int, loss: float, stopped_at: int,
                       kept: int | None, steps_per_epoch: int) -> str:
  what = (f'its loss is {loss}' if not np.isfinite(loss) else
          f'its loss {loss:.4g} is finite, but its gradient or update made the parameters / '
          'optimizer state non-finite')
  dropped = ('' if np.isfinite(loss) else
             f' (step {bad - 1}, whose parameters give that loss, is no fallback: set aside to '
             f'{workdir}/checkpoints_skipped if it was saved)')
  saved = (f'The newest good checkpoint, step {kept}, is kept in {workdir}/checkpoints{dropped}'
           if kept is not None else f'No good checkpoint had been saved{dropped}')
  resume = f'resume from step {kept}' if kept is not None else 'start again'
  return (
      f'training step {bad} (epoch {(bad - 1) // steps_per_epoch}) is not finite: {what}; '
      f'stopped at step {stopped_at}. {saved}. Try a lower train.lr (peak lr now '
      f'{optim.peak_lr(cfg.train):g}), gradient clipping (--config.train.grad_clip_norm=1.0), '
      "--config.model.compute_dtype=float32, or check the inputs for NaN and "
      f'data.normalization. A rerun of this same config is refused (it would reach step {bad} '
      f'again): change the config and pass --config.{workdir_lib.OVERRIDE}=True to {resume}.')


def train_and_evaluate(cfg: Config, workdir: str) -> dict[str, Any]:
  """Trains `cfg.method` on `cfg.data`, evaluating every `eval_every_epochs` and at the end.

  Writes to workdir: run.json (the config and backbone digest, prompt_jax.workdir), writer.lock
  (while running), checkpoints/ (orbax, resumable), prepared.npz (the method's preparation),
  TensorBoard summaries, results.json (strict JSON) and (train.export) tuned/ (prompt_jax.export).
  Raises validation.ConfigError, workdir.WorkdirError, NonFiniteError or Interrupted.
  """
  shard_lib.maybe_initialize_distributed(cfg.mesh)
  validation.check(cfg, num_devices=jax.device_count())
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  one_writer = workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with one_writer:
    workdir_lib.check(workdir, cfg)
    setup = build(cfg, workdir)
    if jax.process_index() == 0:
      workdir_lib.record(workdir, cfg, setup.backbone_digest)
    return _train(setup, workdir)


def _train(setup: Setup, workdir: str) -> dict[str, Any]:
  cfg = setup.config
  tcfg = cfg.train
  n_train = setup.source.splits[cfg.data.train_split]
  # drop_last=False: the last partial batch is padded to the static batch shape, its padding rows
  # masked out of the loss and metrics (batch['mask']).
  steps_per_epoch = (n_train // tcfg.batch_size if tcfg.drop_last
                     else -(-n_train // tcfg.batch_size))
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size {tcfg.batch_size} exceeds the {n_train} training examples')
  total_steps = steps_per_epoch * tcfg.epochs
  if tcfg.max_steps > 0:
    total_steps = min(total_steps, tcfg.max_steps)

  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, schedule = optim.make_optimizer(tcfg, trainable, steps_per_epoch)
  state = steps_lib.initial_state(trainable, tx, setup.method, setup.prepared, cfg,
                                  jax.random.PRNGKey(cfg.seed + 1))

  mesh = shard_lib.make_mesh(cfg.mesh)
  rep, bsh = shard_lib.replicated(mesh), shard_lib.batch_sharding(mesh)
  state_sh = jax.tree_util.tree_map(lambda _: rep, state)
  frozen_sh = shard_lib.frozen_shardings(mesh, frozen)
  state = jax.device_put(state, state_sh)
  frozen = jax.device_put(frozen, frozen_sh)
  if inputs.device_cached(cfg, setup.source):  # pixels stay on the devices; indices per step
    cache = inputs.put_train_split(setup.source, cfg, mesh)
    labels = inputs.train_labels(setup.source, cfg)
    cached_step = jax.jit(steps_lib.make_cached_train_step(setup.model, setup.method, cfg, tx),
                          in_shardings=(state_sh, frozen_sh, bsh, bsh),
                          out_shardings=(state_sh, rep), donate_argnums=(0,))

    def train_step(state, frozen, batch):
      return cached_step(state, frozen, cache, batch)

    eval_step = jax.jit(steps_lib.make_eval_step(setup.model, cfg.data.normalization))
  else:
    if cfg.data.device_cache:
      logging.info('data.source=%r keeps no decoded splits: host input path (normalised '
                   'float32 batches per step)', cfg.data.source)
    labels = None
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
  first_step = int(jax.device_get(state['step']))
  if restored is not None:
    logging.info('resumed from step %d', first_step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  n_train_params = tree.count(trainable)
  writer.write_hparams({'method': cfg.method, 'trainable_params': n_train_params,
                        'frozen_params': tree.count(frozen)})
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  bars = progress.EpochBars(total_steps, steps_per_epoch, tcfg.batch_size,
                            name=os.path.basename(os.path.normpath(workdir)))
  eval_splits = tuple(cfg.data.eval_splits)
  pending: list[tuple[int, dict[str, jax.Array]]] = []  # (step, metrics) not yet checked
  last_loss = meta.get('last_train_loss')

  def verify(step: int) -> None:
    """Reads the finite flags of the steps since the last check; stops at the first bad one."""
    nonlocal last_loss
    if not pending:
      return
    bad, loss = _first_nonfinite(pending)
    pending.clear()
    if bad is None:
      last_loss = loss
      return
    # The parameters of step bad - 1 gave the non-finite loss: they are no fallback either.
    last_good = bad - 1 if np.isfinite(loss) else bad - 2
    kept = checkpointing.keep_up_to(mngr, last_good)
    if jax.process_index() == 0:
      workdir_lib.mark_nonfinite(workdir, {'step': bad, 'loss': repr(loss), 'stopped_at': step,
                                           'checkpoint': kept})
    raise NonFiniteError(_nonfinite_message(cfg, workdir, bad, loss, step, kept, steps_per_epoch))

  def save() -> None:
    meta['last_train_loss'] = last_loss
    checkpointing.save(mngr, state, meta)

  def write_train_scalars(step: int, metrics: dict[str, jax.Array]) -> None:
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if k != 'finite'}
    scalars['lr'] = float(schedule(step - 1))
    writer.write_scalars(step, {f'train/{k}': v for k, v in scalars.items()})

  def run_eval(epoch: int) -> None:
    row: dict[str, Any] = {'epoch': epoch, 'step': int(jax.device_get(state['step']))}
    for split in eval_splits:
      m = evaluate(setup, eval_step, state, frozen, split, tcfg.eval_batch_size, bsh,
                   workdir)
      row[split] = m['accuracy']
      writer.write_scalars(row['step'], {f'{split}/accuracy': m['accuracy'],
                                         f'{split}/loss': m['loss']})
    meta['history'].append(row)
    logging.info('eval %s', row)

  def end_epoch(step: int) -> bool:
    """The method's epoch hook, then the evaluation when one is due; True when it evaluated."""
    nonlocal state
    epoch_done = step // steps_per_epoch
    ms = jax.device_get(state['method_state'])
    new_ms = setup.method.epoch_end(ms, epoch_done, cfg)
    if new_ms is not ms:
      state = dict(state, method_state=jax.device_put(new_ms, rep))
    if epoch_done % tcfg.eval_every_epochs == 0 and step < total_steps:
      run_eval(epoch_done)
      return True
    return False

  step = first_step
  t0 = time.time()
  try:
    with _stop_on_signals() as signals:
      while step < total_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        step_at_start = step
        for batch in _train_batches(setup, epoch, skip, steps_per_epoch, labels):
          state, metrics = train_step(state, frozen, shard_lib.put_batch(batch, bsh))
          step += 1
          pending.append((step, metrics))
          report(step)
          bars(step)
          log_now = step % tcfg.log_every_steps == 0 or step == total_steps
          save_now = step % tcfg.checkpoint_every_steps == 0
          epoch_now = step % steps_per_epoch == 0
          stop_now = _stop_requested(signals, log_now)
          if log_now or save_now or stop_now or epoch_now:
            verify(step)
          if log_now:
            write_train_scalars(step, metrics)
          # The epoch's hook and evaluation come before its checkpoint, so that a saved step
          # always holds every evaluation up to it (a kill between the two loses none).
          evaluated = epoch_now and end_epoch(step)
          if step >= total_steps and not stop_now:
            break  # the final evaluation, then its checkpoint, follow the loop
          if save_now or stop_now or evaluated:
            save()
          if stop_now:
            mngr.wait_until_finished()
            raise Interrupted(signals.get('signum', signal.SIGTERM), step, workdir)
        if step < total_steps and step % steps_per_epoch:
          raise RuntimeError(
              f'split {cfg.data.train_split!r} ran out after {skip + step - step_at_start} '
              f'batches of epoch {epoch}; the source declared {n_train} examples = '
              f'{steps_per_epoch} batches of {tcfg.batch_size}. The dataset is smaller than its '
              'declared split size.')
    verify(step)
    if not meta['history'] or meta['history'][-1]['step'] != step:
      run_eval(-(-step // steps_per_epoch))
    save()
    mngr.wait_until_finished()
  finally:
    mngr.close()

  results = {
      'method': cfg.method, 'variant': setup.method.label(cfg), 'task': cfg.data.get('task', ''),
      'seed': cfg.seed, 'num_classes': setup.source.num_classes,
      'splits': {'train': cfg.data.train_split, 'val': cfg.data.val_split or None,
                 'eval': list(eval_splits)},
      'steps': step, 'started_from_step': first_step, 'trainable_params': n_train_params,
      'train_seconds_this_run': time.time() - t0, 'last_train_loss': last_loss,
      **summarize(meta['history'], eval_splits, cfg.data.val_split), 'history': meta['history'],
      'config': json.loads(cfg.to_json()),
  }
  for split in eval_splits:  # convenience: final accuracy per split at top level
    results[split] = meta['history'][-1][split]
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, 'results.json'), results)
  if tcfg.export:  # on every process: the orbax save is collective (process 0 writes)
    from prompt_jax import export
    export.export_tuned(os.path.join(workdir, 'tuned'), jax.device_get(state['trainable']),
                        jax.device_get(frozen), cfg, setup.prepared,
                        backbone_digest=setup.backbone_digest)
  writer.flush()
  return results
