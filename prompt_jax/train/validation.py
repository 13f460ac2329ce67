"""Checks of a whole config before any data or weights load; each error names the key, the valid
values and the fix, and every problem of the config is listed at once.

  validation.check(config)                          # main, before any program runs
  (a method's own rules: `Method.check`, prompt_jax/methods/base.py)
  validation.check(config, num_devices=8)           # the trainer: + batch sizes vs the devices
  validation.check_splits(config, source.splits)    # once the source is built, before data loads

`check` touches no device (main calls it before `jax.distributed.initialize()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence

import ml_collections

from prompt_jax.data import tasks
from prompt_jax.util.checks import ConfigError, at_least, fraction, one_of
from prompt_jax.checkpoints import backbone
from prompt_jax import checkpoints
from prompt_jax.methods import base
from prompt_jax.data import preprocess
from prompt_jax.data import registry

Config = ml_collections.ConfigDict

ACTS = ('gelu', 'gelu_tanh', 'quick_gelu')
POOLS = ('cls', 'norm_mean', 'mean_norm')
HEAD_INITS = ('kaiming_fan_out', 'normal', 'trunc_normal', 'zeros')
DTYPES = ('float32', 'bfloat16')
ATTENTION = ('auto', 'einsum', 'fused')  # models/attention.py IMPLEMENTATIONS
POSEMB_RESIZE = ('linear', 'bicubic')
RESIZE = ('bilinear', 'bicubic')
RESIZE_TO = ('square', 'shorter_side')
SAMPLERS = ('shuffle', 'class_balanced')
CACHE_DTYPES = ('float32', 'uint8')
OPTIMIZERS = ('sgd', 'adamw')
SCHEDULE_PER = ('epoch', 'step')


def check_recipe_task(config: Config) -> None:
  """A config holding one task's per-task recipe (`recipe_task`, set by `:task=`) must train on
  that task: a different `data.task` would silently use the wrong hyperparameters."""
  recipe = config.recipe_task
  if not recipe or config.data.source not in ('vtab', 'folder'):
    return
  task = config.data.task
  if tasks.is_vtab_task(task) and tasks.canonical_task(task) == tasks.canonical_task(recipe):
    return
  raise ConfigError(
      f'config.data.task={task!r} but the config holds the per-task recipe of {recipe!r} '
      f'(config.recipe_task). Load the config for that task instead, e.g. '
      f'--config=configs/{config.method}_vtab.py:task={task}, or pass '
      "--config.recipe_task='' to keep these hyperparameters.")


# ---------------------------------------------------------------- rules: config -> messages


def _backbone(c: Config) -> list[str]:
  out = []
  if not c.init.checkpoint and c.program != 'demo':  # the demo names its own backbones
    out.append(backbone.missing_checkpoint_message(c))
  out += one_of('init.format', c.init.format, checkpoints.FORMATS.names())
  out += one_of('init.posemb_resize', c.init.posemb_resize, POSEMB_RESIZE)
  return out


def _method(c: Config) -> list[str]:
  """The method exists and has its config section; its own rules (`Method.check`) and those of
  the chosen prompt initialiser."""
  names = base.METHODS.names()
  if c.method not in names:
    return [f'method={c.method!r}: must be one of {names}']
  m = base.get(c.method)
  if m.config_section and m.config_section not in c:
    return [f'method={c.method!r} reads the config section {m.config_section!r}, which this '
            f'config lacks: use a config file of that method (configs/{c.method}_*.py)']
  init = c.prompt_init
  out = one_of('prompt_init.name', init.name, ['default', *base.INITIALIZERS.names()])
  if init.name in base.INITIALIZER_CHECKS:
    out += base.INITIALIZER_CHECKS[init.name](c)
  return out + [p for p in m.check(c) if p not in out]


def _model(c: Config) -> list[str]:
  m = c.model
  out = []
  try:
    patch = base.get(c.method).arch(c).patch_size
  except KeyError:
    pass  # an unknown method: reported by _method
  except ValueError as e:
    out.append(f'model.variant={m.variant!r}: {e}')
  else:
    if c.data.image_size % patch:
      out.append(f'data.image_size={c.data.image_size}: must be a multiple of the patch size '
                 f'{patch} of model.variant={m.variant!r}')
  out += one_of('model.act', m.act, ACTS)
  out += one_of('model.pool', m.pool, POOLS)
  out += one_of('model.head_init', m.head_init, HEAD_INITS)
  out += one_of('model.compute_dtype', m.compute_dtype, DTYPES)
  out += one_of('model.attention', m.attention, ATTENTION)
  out += fraction('model.drop_path', m.drop_path)
  return out


def _data(c: Config) -> list[str]:
  d = c.data
  out = ([] if registry.SOURCES.has_module_for(d.source)  # no TensorFlow import (preflight)
         else one_of('data.source', d.source, registry.SOURCES.names()))
  out += at_least('data.image_size', d.image_size, 1)
  out += one_of('data.resize', d.resize, RESIZE)
  out += one_of('data.resize_to', d.resize_to, RESIZE_TO)
  if not 0 < d.crop_pct <= 1:
    out.append(f'data.crop_pct={d.crop_pct!r}: must be in (0, 1]')
  out += one_of('data.normalization', d.normalization, sorted(preprocess.MEAN_STD))
  out += one_of('data.sampler', d.sampler, SAMPLERS)
  out += one_of('data.cache_dtype', d.cache_dtype, CACHE_DTYPES)
  if not d.cache_memory_gb >= 0:
    out.append(f'data.cache_memory_gb={d.cache_memory_gb!r}: must be >= 0 (0: every eval split '
               'is memmapped to workdir/cache)')
  if not d.eval_splits:
    out.append('data.eval_splits is empty: name at least one split to evaluate on')
  if d.val_split and d.val_split not in d.eval_splits:
    out.append(f'data.val_split={d.val_split!r}: must be one of data.eval_splits '
               f'{list(d.eval_splits)} (it selects the reported epoch), or empty')
  if d.sampler == 'class_balanced':
    if not c.train.drop_last:  # the sampler yields len // batch_size full batches (ClassSampler)
      out.append("data.sampler='class_balanced' yields len(split) // batch_size full batches per "
                 "epoch (the release's ClassSampler): set --config.train.drop_last=True")
    out += at_least('data.images_per_class', d.images_per_class, 1)
    if d.images_per_class >= 1 and c.train.batch_size % d.images_per_class:
      out.append(f'train.batch_size={c.train.batch_size}: must be a multiple of '
                 f'data.images_per_class={d.images_per_class} (class_balanced sampler)')
  return out


def _train(c: Config) -> list[str]:
  t = c.train
  out = one_of('train.optimizer', t.optimizer, OPTIMIZERS)
  out += one_of('train.schedule_per', t.schedule_per, SCHEDULE_PER)
  if not t.lr > 0:
    out.append(f'train.lr={t.lr!r}: must be > 0')
  for key in ('epochs', 'batch_size', 'eval_batch_size', 'eval_every_epochs',
              'checkpoint_every_steps', 'keep_checkpoints', 'log_every_steps'):
    out += at_least(f'train.{key}', t[key], 1)
  for key in ('wd', 'warmup_epochs', 'warmup_init', 'min_lr', 'grad_clip_norm',
              'grad_clip_value'):
    out += at_least(f'train.{key}', t[key], 0)
  for key in ('momentum', 'b1', 'b2'):
    out += fraction(f'train.{key}', t[key])
  if not t.eps > 0:
    out.append(f'train.eps={t.eps!r}: must be > 0')
  if t.max_steps != -1 and t.max_steps < 1:
    out.append(f'train.max_steps={t.max_steps}: must be >= 1, or -1 for no limit')
  out += at_least('mesh.fsdp', c.mesh.fsdp, 1)
  return out


def _evaluate(c: Config) -> list[str]:
  """program='evaluate': something to score, and an export given by a path that exists."""
  if c.program != 'evaluate':
    return []
  out = [] if c.data.eval_splits else ['data.eval_splits=(): program=evaluate scores these splits; '
                                       "name at least one, e.g. ('test',)"]
  tuned = c.evaluate.tuned
  if tuned and '://' not in tuned and not os.path.exists(tuned):
    out.append(f'evaluate.tuned={tuned!r}: no such export (a run\'s tuned/ folder or a '
               '.safetensors file; empty: this --workdir/tuned)')
  return out


RULES: tuple[Callable[[Config], list[str]], ...] = (_backbone, _method, _model, _data, _train,
                                                    _evaluate)


def _devices(c: Config, num_devices: int) -> list[str]:
  out = []
  for key in ('batch_size', 'eval_batch_size'):
    if c.train[key] % num_devices:
      out.append(f'train.{key}={c.train[key]}: must be a multiple of the {num_devices} devices '
                 '(each batch is split over all of them)')
  if c.mesh.fsdp >= 1 and num_devices % c.mesh.fsdp:
    out.append(f'mesh.fsdp={c.mesh.fsdp}: must divide the {num_devices} devices')
  return out


LR_WARN_ABOVE = 100.0  # no recipe searches higher (VPT's SGD grid tops at 50)


def warnings(config: Config) -> list[str]:
  """Values that are valid but almost certainly a mistake; main prints each, and runs."""
  lr = config.train.lr
  if lr > LR_WARN_ABOVE:
    return [f'train.lr={lr!r} is above {LR_WARN_ABOVE:g}, higher than any recipe searches (VPT\'s '
            'SGD grid tops at 50); training will likely diverge. Did you mean a smaller value?']
  return []


def _raise(problems: list[str]) -> None:
  if problems:
    raise ConfigError('invalid config:\n' + '\n'.join(f'  {p}' for p in problems))


_passed = ['']  # the last config (as JSON) whose rules passed in this process


def check(config: Config, num_devices: int | None = None, *,
          rules: Sequence[Callable[[Config], list[str]]] = ()) -> None:
  """Every start-up check; raises ConfigError listing each bad key, its valid values and the fix.
  `num_devices`: also check the batch sizes and mesh against that many devices. `rules`: more
  rules from the layers above (the command line hands the programs' rule,
  `prompt_jax.protocol.programs.problems`).

  The rules run once per config: main checks before TensorFlow loads, and the trainer's call for
  the same config (content, not identity) then only adds the device rules."""
  key = config.to_json()
  problems = []
  if key != _passed[0]:
    check_recipe_task(config)
    problems = [p for rule in (*RULES, *rules) for p in rule(config)]
  if num_devices:
    problems += _devices(config, num_devices)
  _raise(problems)
  _passed[0] = key


def batch_exceeds(config: Config, n_train: int) -> str:
  """The message for a training split of `n_train` examples smaller than one drop_last batch."""
  return (f'train.batch_size={config.train.batch_size} exceeds the {n_train} examples of '
          f'data.train_split={config.data.train_split!r}: with train.drop_last=True no step would '
          'run; pass a smaller --config.train.batch_size')


def split_problems(config: Config, splits: Collection[str]) -> list[str]:
  """The training, evaluation and validation splits not among the source's `splits` (names)."""
  d, have = config.data, sorted(splits)
  return [f'data.{key}={name!r}: the {d.source} source has no such split; it has {have}'
          for key, names in (('train_split', [d.train_split]), ('eval_splits', d.eval_splits),
                             ('val_split', [d.val_split] if d.val_split else []))
          for name in names if name not in splits]


def check_splits(config: Config, splits: dict[str, int]) -> None:
  """The training, evaluation and validation splits exist in the source (`splits`: name -> size)."""
  _raise(split_problems(config, splits))
