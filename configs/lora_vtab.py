"""LoRA (rank 8 on the fused qkv projection of every block) on one VTAB-1k task, trained with the
recipe of NOAH's release for its LoRA / Adapter baselines (`common.petl_recipe`;
prompt_jax/methods/lora.py).

  prompt-jax --config=configs/lora_vtab.py:task=dtd --workdir=/tmp/lora \
      --config.init.checkpoint=/path/ViT-B_16.npz
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100')
  c = common.base()
  c.method = 'lora'
  c.lora = common.lora()
  common.petl_recipe(c, a.task)
  return common.finalize(c)
