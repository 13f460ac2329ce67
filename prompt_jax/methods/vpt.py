"""VPT shallow / deep (Jia et al. 2022), per spec 01 §VPT.

Token layout [CLS, P prompts, patches]; prompts are inserted after the position embedding and get
none. Shallow: one prompt set before block 0, carried through. Deep: before every block i >= 1 the
tokens at the prompt positions are replaced by that layer's prompts ([depth, P, D] in total).
Init uniform(-v, v), v = sqrt(6 / (3·patch² + D)) (0.0625 for ViT-B/16); with a projection
(`project_dim` > 0) prompts live in project_dim and a Dense maps them to D, v uses project_dim.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_jax.methods import base
from prompt_jax.models import vit
from prompt_jax.models.prompter import Prompter

Array = Any


class VPTPrompter(Prompter):
  """prompts: [depth if deep else 1, P, project_dim or D] under 'prompt/prompts'."""

  num_prompts: int
  width: int
  depth: int
  patch_size: int
  deep: bool = True
  dropout: float = 0.0
  project_dim: int = 0

  def setup(self):
    dim = self.project_dim or self.width
    v = math.sqrt(6.0 / (3 * self.patch_size ** 2 + dim))
    n = self.depth if self.deep else 1
    self.prompts = self.param('prompts', symmetric_uniform(v), (n, self.num_prompts, dim))
    self.proj = nn.Dense(self.width, name='proj') if self.project_dim else None
    self.drop = nn.Dropout(self.dropout)

  def layer_prompts(self, layer: int, train: bool) -> Array:
    """[P, D] prompts of `layer` after projection and dropout."""
    p = self.prompts[layer]
    if self.proj is not None:
      p = self.proj(p)
    return self.drop(p, deterministic=not train)

  def insert(self, layer: int, x: Array, prev_info: Any, train: bool) -> Array:
    del prev_info
    n = self.num_prompts
    if layer > 0 and not self.deep:
      return x
    p = jnp.broadcast_to(self.layer_prompts(layer, train).astype(x.dtype)[None],
                         (x.shape[0], n, self.width))
    rest = x[:, 1:] if layer == 0 else x[:, 1 + n:]
    return jnp.concatenate([x[:, :1], p, rest], axis=1)


def symmetric_uniform(v: float):
  """Initializer drawing uniform(-v, v)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -v, v)
  return init


def build_prompter(config: base.Config, prepared: Any) -> VPTPrompter:
  del prepared
  arch = vit.decode_variant(config.model.variant)
  p = config.vpt
  return VPTPrompter(num_prompts=p.num_prompts, width=arch['width'], depth=arch['depth'],
                     patch_size=arch['patch_size'], deep=p.deep, dropout=p.dropout,
                     project_dim=p.project_dim)


def prompt_slots(config: base.Config, prepared: Any) -> dict[str, tuple[int, ...]]:
  del prepared
  depth = vit.decode_variant(config.model.variant)['depth']
  return {'prompt/prompts': tuple(range(depth)) if config.vpt.deep else (0,)}


def variant(config: base.Config) -> str:
  """'vpt_deep' | 'vpt_shallow'."""
  return 'vpt_deep' if config.vpt.deep else 'vpt_shallow'


VPT = base.register(base.Method(name='vpt', build_prompter=build_prompter,
                                prompt_slots=prompt_slots, variant=variant))
