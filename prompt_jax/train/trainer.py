"""The trainer: frozen backbone + trainable subtree, masked optax, sharded jit, orbax checkpoints.

  results = train_and_evaluate(config, workdir)

Gradients are taken only with respect to the trainable subtree (`jax.value_and_grad` over it), so
XLA never forms backbone weight gradients; the frozen params are a separate jit argument and never
change. The data order depends only on (seed, epoch) and the dropout rng on (seed, step), so a
killed run restored from its last checkpoint reaches the same result as an uninterrupted one.

A run is what its config says (prompt_jax/train/workdir.py, checkpointing.py, validation.py):
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
from typing import Any

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.train import checkpointing
from prompt_jax import evaluators
from prompt_jax.evaluators import features as features_lib
from prompt_jax.train import inputs
from prompt_jax.train import loop as loop_lib
from prompt_jax.train import optim
from prompt_jax.util import progress
from prompt_jax.train import sharding as shard_lib
from prompt_jax.train import steps as steps_lib
from prompt_jax.train import tuned as tuned_lib
from prompt_jax.util import tree
from prompt_jax.util import treeio
from prompt_jax.train import validation
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.data import registry as data_registry
from prompt_jax.methods import base

Config = ml_collections.ConfigDict
PREPARED = 'prepared.npz'
Interrupted = loop_lib.Interrupted  # SIGTERM / SIGINT after a checkpoint (prompt_jax.train.loop)
NonFiniteError = checkpointing.NonFiniteError


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


def prepare_cached(recipe: base.Recipe, ctx: base.PrepareContext) -> Any:
  """`recipe.prepare(ctx)`, cached in workdir/prepared.npz (`treeio`, no pickle) under the key of
  `recipe.prepare_keys` (none declared: the whole config) / `prepare_files` and the backbone
  digest; a cache of other inputs is recomputed (the changed inputs are logged). Returns the stored
  form (numpy arrays) both times."""
  keys = recipe.prepare_keys or tuple(ctx.config.keys())  # undeclared: the whole config
  key, inputs = workdir_lib.inputs_key(ctx.config, keys, ctx.backbone_digest,
                                       recipe.prepare_files)
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
  value = recipe.prepare(ctx)
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
  arch = method.arch(cfg)  # config.model.variant, decoded once for the run
  backbone_params = backbone_lib.load(method, cfg, arch)
  digest = tree.digest(backbone_params)
  workdir_lib.check_backbone(workdir, cfg, digest)  # the config half ran before any work
  bb_model = backbone_lib.backbone_model(method, cfg, arch)

  def feats(split: str, select, **kw):
    return features_lib.extract(bb_model, backbone_params, source, split, select=select, **kw)

  ctx = base.PrepareContext(config=cfg, source=source, backbone=bb_model,
                            backbone_params=backbone_params, arch=arch, workdir=workdir,
                            features=feats,
                            backbone_digest=digest,
                            cache_key=lambda keys: workdir_lib.inputs_key(cfg, keys, digest)[0])
  recipe, parts = method.recipe, method.model
  prepared = prepare_cached(recipe, ctx) if recipe.prepare is not None else None
  model = method.build(cfg, source.num_classes, prepared, arch)
  params = backbone_lib.init_with(model, cfg, backbone_params)
  params = parts.init_params(params, prepared, cfg)
  if cfg.prompt_init.name != 'default':
    initializer = base.get_initializer(cfg.prompt_init.name)
    params = initializer(params, ctx, parts.prompt_slots(cfg, arch, prepared), cfg)
  return Setup(cfg, method, source, model, params, prepared, ctx, digest)


# ---------------------------------------------------------------- evaluation


def evaluate(path: inputs.InputPath, eval_fn, state: Any, frozen: Any, split: str,
             num_examples: int, batch_size: int, bsharding) -> dict[str, float]:
  """Top-1 and loss over a whole split (the 'classification' evaluator; padding rows masked out),
  fed by `path` (the device path decodes the split once per run and `eval_fn` normalises)."""
  classification = evaluators.get('classification')
  return classification(
      lambda batch: eval_fn(state['trainable'], frozen, shard_lib.put_batch(batch, bsharding)),
      path.eval_batches(split, batch_size), total=-(-num_examples // batch_size),
      desc=f'eval {split}')


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


def train_and_evaluate(cfg: Config, workdir: str) -> dict[str, Any]:
  """Trains `cfg.method` on `cfg.data`, evaluating every `eval_every_epochs` and at the end.

  Writes to workdir: run.json (the config and backbone digest, train/workdir.py), writer.lock
  (while running), checkpoints/ (orbax, resumable), prepared.npz (the method's preparation),
  TensorBoard summaries, results.json (strict JSON) and (train.export) tuned/ (train/tuned.py).
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


def _steps(cfg: Config, n_train: int) -> tuple[int, int]:
  """(steps per epoch, total steps)."""
  t = cfg.train
  # drop_last=False: the last partial batch is padded to the static batch shape, its padding rows
  # masked out of the loss and metrics (batch['mask']).
  steps_per_epoch = n_train // t.batch_size if t.drop_last else -(-n_train // t.batch_size)
  if steps_per_epoch == 0:  # preflight tells it before loading where it knows the split's size
    raise validation.ConfigError(validation.batch_exceeds(cfg, n_train))
  total_steps = steps_per_epoch * t.epochs
  if t.max_steps > 0:
    total_steps = min(total_steps, t.max_steps)
  return steps_per_epoch, total_steps


def _train(setup: Setup, workdir: str) -> dict[str, Any]:
  cfg, tcfg = setup.config, setup.config.train
  n_train = setup.source.splits[cfg.data.train_split]
  steps_per_epoch, total_steps = _steps(cfg, n_train)

  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, schedule = optim.make_optimizer(tcfg, trainable, steps_per_epoch)
  state = steps_lib.initial_state(trainable, tx, setup.method.recipe, setup.prepared, cfg,
                                  jax.random.PRNGKey(cfg.seed + 1))

  mesh = shard_lib.make_mesh(cfg.mesh)
  rep, bsh = shard_lib.replicated(mesh), shard_lib.batch_sharding(mesh)
  state_sh = jax.tree_util.tree_map(lambda _: rep, state)
  frozen_sh = shard_lib.frozen_shardings(mesh, frozen)
  state = jax.device_put(state, state_sh)
  frozen = jax.device_put(frozen, frozen_sh)
  path = inputs.make(cfg, setup.source, mesh, workdir)  # the one choice of input path
  train_step = path.jit_train_step(
      steps_lib.make_train_step(setup.model, setup.method.recipe, cfg, tx), state_sh, frozen_sh,
      bsh, rep)
  eval_step = path.eval_step(setup.model)

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
  writer.write_hparams({'method': cfg.method, 'trainable_params': tree.count(trainable),
                        'frozen_params': tree.count(frozen)})
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  bars = progress.EpochBars(total_steps, steps_per_epoch, tcfg.batch_size,
                            name=os.path.basename(os.path.normpath(workdir)))

  def eval_split(state: Any, split: str) -> dict[str, float]:
    return evaluate(path, eval_step, state, frozen, split, setup.source.splits[split],
                    tcfg.eval_batch_size, bsh)

  run = loop_lib.Run(
      cfg=cfg, workdir=workdir, recipe=setup.method.recipe, path=path, train_step=train_step,
      evaluate=eval_split, mngr=mngr, writer=writer, schedule=schedule, shardings=(rep, bsh),
      n_train=n_train, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
      hooks=(report, bars))
  loop = loop_lib.Loop(run, state=state, frozen=frozen, meta=meta, step=first_step,
                       last_loss=meta.get('last_train_loss'))
  loop.train()
  results = _results(setup, loop, first_step, tree.count(trainable))
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, 'results.json'), results)
  if tcfg.export:  # on every process: the orbax save is collective (process 0 writes)
    tuned_lib.export_tuned(os.path.join(workdir, 'tuned'), jax.device_get(loop.state['trainable']),
                        jax.device_get(frozen), cfg, setup.prepared,
                        backbone_digest=setup.backbone_digest)
  writer.flush()
  return results


def _results(setup: Setup, loop: loop_lib.Loop, first_step: int, n_train_params: int
             ) -> dict[str, Any]:
  """results.json: the run, its summary (final, val- and test-selected) and the config."""
  cfg, history = setup.config, loop.meta['history']
  eval_splits = tuple(cfg.data.eval_splits)
  results = {
      'method': cfg.method, 'variant': setup.method.label(cfg), 'task': cfg.data.task,
      'seed': cfg.seed, 'num_classes': setup.source.num_classes,
      'splits': {'train': cfg.data.train_split, 'val': cfg.data.val_split or None,
                 'eval': list(eval_splits)},
      'steps': loop.step, 'started_from_step': first_step, 'trainable_params': n_train_params,
      'train_seconds_this_run': loop.seconds, 'last_train_loss': loop.last_loss,
      **summarize(history, eval_splits, cfg.data.val_split), 'history': history,
      'config': json.loads(cfg.to_json()),
  }
  for split in eval_splits:  # convenience: final accuracy per split at top level
    results[split] = history[-1][split]
  return results
