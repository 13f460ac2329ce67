"""What config files (configs/*.py) share: the library's config schema (`prompt_jax.util.config`:
`base()`, `parse_arg`, `set_field`, `field`, `finalize`), each method's section under its method's
name (declared in the method's file, `prompt_jax/methods/<name>.py` `section()`), and the recipes
that several config files apply. Config files import the library; the library never imports them.

Every VTAB config accepts `task=`: a config with a per-task recipe table (SHIP) applies that task's
row, and records it in `recipe_task` so that a different `--config.data.task` is an error.
"""

from __future__ import annotations

from typing import Any

from prompt_jax.data import tasks
from prompt_jax.methods.adapter import section as adapter
from prompt_jax.methods.davpt import section as davpt
from prompt_jax.methods.lora import section as lora
from prompt_jax.methods.prefix import section as prefix
from prompt_jax.methods.sap import section as sap
from prompt_jax.methods.ship import section as ship
from prompt_jax.methods.vpt import section as vpt
from prompt_jax.protocol.b2n import section as b2n
from prompt_jax.util.config import (DEFAULT_METHOD, ConfigDict, base, field, finalize, flatten,
                                    parse_arg, set_field)

__all__ = ['DEFAULT_METHOD', 'RUN_TABLE', 'ConfigDict', 'adapter', 'apply_recipe', 'b2n', 'base',
           'davpt', 'demo',
           'field', 'finalize', 'flatten', 'lora', 'parse_arg', 'petl_recipe', 'prefix', 'sap',
           'set_field', 'ship', 'vpt']


def petl_recipe(c: ConfigDict, task: str) -> None:
  """NOAH's VTAB scripts for LoRA / Adapter: AdamW lr 1e-3, wd 1e-4, batch 64, 100 epochs, 10
  warm-up epochs from 1e-6, cosine to 1e-5 per epoch (timm), drop path 0.1, full batches only,
  `--direct_resize` (bicubic to 224, no crop), ImageNet mean / std (no `--inception`), head
  N(0, .02) with zero bias (its `reset_classifier`), no augmentation."""
  c.data.task = task
  c.model.update(drop_path=0.1, head_init='normal', head_init_std=0.02, head_bias_init=0.0)
  c.data.update(normalization='imagenet', resize='bicubic', crop_pct=1.0, antialias=True)
  c.train.update(optimizer='adamw', eps=1e-8, batch_size=64, lr=1e-3, wd=1e-4,
                 lr_scale_by_batch=False, epochs=100, warmup_epochs=10, warmup_init=1e-6,
                 min_lr=1e-5, schedule_per='epoch', cosine_shift=False, drop_last=True)


# config.demo.run_table: name -> the overrides of that run (a method and its options);
# config.demo.runs: which of them run, in order (prompt_jax/protocol/demo.py).
RUN_TABLE = {
    'linear': {'method': 'linear'},
    'vpt_shallow': {'method': 'vpt', 'vpt': {'deep': False, 'dropout': 0.0}},
    'vpt_deep': {'method': 'vpt', 'vpt': {'deep': True}},
}


def demo(**over: Any) -> ConfigDict:
  """`config.demo`: pretraining (full fine-tuning of a random micro ViT on digits 0-4) and runs."""
  c = ConfigDict(dict(
      pretrain_epochs=40,         # epochs of the micro ViT's pretraining
      pretrain_lr=2e-3,           # its AdamW learning rate
      pretrain_method='full',     # the method that pretrains it
      runs=tuple(RUN_TABLE),      # the tuned runs, in order (names in run_table)
      run_table=RUN_TABLE))       # name -> that run's overrides (a method and its options)
  c.update(over)
  return c


def apply_recipe(c: ConfigDict, task: str, table: dict[str, dict[str, Any]]) -> None:
  """Sets data.task and `c.recipe_task`, and writes the task's row of `table` ({task: {dotted
  key: value}}) into the config. A task without a row is an error listing those with one."""
  task = tasks.canonical_task(task)
  if task not in table:
    raise ValueError(f'no recipe for task {task!r}; this config has recipes for {sorted(table)}')
  c.data.task = task
  c.recipe_task = task
  for dotted, value in table[task].items():
    set_field(c, dotted, value, what='recipe key')
