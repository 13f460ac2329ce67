"""Baselines on the same trainer: linear probe (head only) and full fine-tuning (everything)."""

from prompt_jax.methods import base
from prompt_jax.methods import torch_names

_HEAD = torch_names.head('head')  # timm's head.{weight,bias}
LINEAR = base.register(base.Method(
    name='linear',
    model=base.ModelParts(torch_naming=torch_names.TorchNaming(
        lambda t, config: _HEAD[0](t), lambda sd, config: _HEAD[1](sd), 'timm')),
    recipe=base.Recipe(trainable=(r'^head/',))))
FULL = base.register(base.Method(name='full', recipe=base.Recipe(trainable=(r'.*',))))
