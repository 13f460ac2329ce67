"""The jitted steps: one training update of the trainable subtree, and one evaluation batch."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from clu import metrics as clu_metrics
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from prompt_jax.util import tree
from prompt_jax.data import device_input
from prompt_jax.methods import base

Config = ml_collections.ConfigDict

EvalMetrics = clu_metrics.Collection.create(accuracy=clu_metrics.Accuracy,
                                            loss=clu_metrics.Average.from_output('loss'))


def initial_state(trainable: Any, tx: optax.GradientTransformation, recipe: base.Recipe,
                  prepared: Any, cfg: Config, rng: jax.Array) -> dict[str, Any]:
  """The train state at step 0: {'step', 'trainable', 'opt_state', 'method_state', 'rng'}."""
  return {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
          'opt_state': tx.init(trainable), 'method_state': recipe.init_state(prepared, cfg),
          'rng': rng}


def make_train_step(model: nn.Module, recipe: base.Recipe, cfg: Config,
                    tx: optax.GradientTransformation) -> Callable[..., Any]:
  """train_step(state, frozen, batch) -> (state, metrics): one update of the trainable subtree.

  state: {'step', 'trainable', 'opt_state', 'method_state', 'rng'}; frozen: the frozen params;
  batch: {'image' [B,H,W,3], 'label' [B], 'mask' [B]}. Dropout rng = fold_in(state rng, step).
  metrics['finite'] (scalar bool, on device): the loss, the gradient norm and every float leaf of
  the updated state are finite; the trainer reads it only at log / checkpoint / eval steps.
  """

  def train_step(state: dict[str, Any], frozen: Any, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(state['rng'], state['step'])

    def loss_fn(trainable):
      params = tree.merge(trainable, frozen)
      (logits, out), mut = model.apply({'params': params}, batch['image'], train=True,
                                       rngs={'dropout': rng}, mutable=['aux'])
      inputs = base.LossInputs(logits, out, mut.get('aux', {}), batch, state['method_state'], cfg)
      loss, metrics = recipe.loss(inputs)
      stopped = base.LossInputs(*(jax.lax.stop_gradient(x) for x in
                                  (logits, out, mut.get('aux', {}), batch, state['method_state'])),
                                cfg)
      return loss, (metrics, recipe.update_state(state['method_state'], stopped), logits)

    (loss, (metrics, method_state, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['trainable'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['trainable'])
    trainable = jax.tree_util.tree_map(lambda p, u: p + u, state['trainable'], updates)
    correct = (logits.argmax(-1) == batch['label']) & batch['mask']
    grad_norm = optax.global_norm(grads)
    updated = (trainable, opt_state, method_state)
    metrics = dict(metrics, loss=loss,
                   accuracy=correct.sum() / jnp.maximum(batch['mask'].sum(), 1),
                   grad_norm=grad_norm,
                   finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm) & tree.all_finite(updated))
    new_state = dict(state, step=state['step'] + 1, trainable=trainable, opt_state=opt_state,
                     method_state=method_state)
    return new_state, metrics

  return train_step


AUGMENT_STREAM = 0x61756700  # folded into PRNGKey(seed): the augmentation's own rng stream


def augment_key(seed: int, step: jax.Array) -> jax.Array:
  """The augmentation key of training step `step` (0-based): a function of (seed, step) only."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), AUGMENT_STREAM), step)


def make_cached_train_step(model: nn.Module, recipe: base.Recipe, cfg: Config,
                           tx: optax.GradientTransformation) -> Callable[..., Any]:
  """train_step(state, frozen, cache, batch) -> (state, metrics) over a device-resident split:
  `gather_from_cache(make_train_step(...), cfg)`."""
  return gather_from_cache(make_train_step(model, recipe, cfg, tx), cfg)


def gather_from_cache(train_step: Callable[..., Any], cfg: Config) -> Callable[..., Any]:
  """`train_step` (make_train_step) fed from a device-resident split: (state, frozen, cache,
  batch) -> (state, metrics).

  cache: {'image': [N, S, S, 3] uint8 or float32 in [0, 1] (sharded over the data axes),
  'label': int32[N]}; batch: {'index': int32[B], 'mask': bool[B]} (only indices cross from the
  host). The step gathers its rows, augments them (data.augment; key `augment_key(seed, step)`)
  and normalises (data.normalization) before the update."""
  d = cfg.data

  def cached_step(state, frozen, cache, batch):
    key = augment_key(cfg.seed, state['step']) if d.augment else None
    images = device_input.prepare(cache['image'][batch['index']], d.normalization, key)
    return train_step(state, frozen, {'image': images, 'label': cache['label'][batch['index']],
                                      'mask': batch['mask']})

  return cached_step


def make_eval_step(model: nn.Module, normalization: str | None = None) -> Callable[..., Any]:
  """eval_step(trainable, frozen, batch) -> EvalMetrics (accuracy, loss; padded rows masked).

  With `normalization`, batch['image'] holds cached pixels (uint8, or float32 in [0, 1]) that the
  step normalises (`device_input.prepare`); without, model-ready float32 images."""

  def eval_step(trainable, frozen, batch):
    images = batch['image']
    if normalization is not None:
      images = device_input.prepare(images, normalization)
    logits, _ = model.apply({'params': tree.merge(trainable, frozen)}, images, train=False)
    logits = logits.astype(jnp.float32)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch['label'][:, None], axis=-1)[:, 0]
    return EvalMetrics.single_from_model_output(logits=logits, labels=batch['label'], loss=ce,
                                                mask=batch['mask'])

  return eval_step
