"""Prefix tuning (10 key/value prefix tokens in every block) on one VTAB-1k task, trained with the
recipe of NOAH's release for its LoRA / Adapter baselines (`common.petl_recipe`;
prompt_jax/methods/prefix.py).

  prompt-jax --config=configs/prefix_vtab.py:task=dtd --workdir=/tmp/prefix \
      --config.init.checkpoint=/path/ViT-B_16.npz
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100')
  c = common.base()
  c.method = 'prefix'
  c.prefix = common.prefix()
  common.petl_recipe(c, a.task)
  return common.finalize(c)
