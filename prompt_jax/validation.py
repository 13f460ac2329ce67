"""Checks of a whole config before any data or weights load; each error names the fix."""

from __future__ import annotations

import ml_collections

from prompt_jax.data import tasks


def check_recipe_task(config: ml_collections.ConfigDict) -> None:
  """A config holding one task's per-task recipe (`recipe_task`, set by `:task=`) must train on
  that task: a different `data.task` would silently use the wrong hyperparameters."""
  recipe = config.recipe_task
  if not recipe or config.data.source not in ('vtab', 'folder'):
    return
  task = config.data.task
  if tasks.is_vtab_task(task) and tasks.canonical_task(task) == tasks.canonical_task(recipe):
    return
  raise ValueError(
      f'config.data.task={task!r} but the config holds the per-task recipe of {recipe!r} '
      f'(config.recipe_task). Load the config for that task instead, e.g. '
      f'--config=configs/{config.method}_vtab.py:task={task}, or pass '
      "--config.recipe_task='' to keep these hyperparameters.")


def check_drop_last(config: ml_collections.ConfigDict) -> None:
  """The class-balanced sampler yields only full batches (len // batch_size, as DA-VPT's
  ClassSampler), so the trainer must count steps that way too."""
  if config.data.get('sampler', 'shuffle') == 'class_balanced' and not config.train.drop_last:
    raise ValueError("config.data.sampler='class_balanced' yields len(split) // batch_size full "
                     'batches per epoch (the release\'s ClassSampler); set '
                     '--config.train.drop_last=True.')


def check(config: ml_collections.ConfigDict) -> None:
  """Every start-up check; raises ValueError naming the field and the fix."""
  check_recipe_task(config)
  check_drop_last(config)
