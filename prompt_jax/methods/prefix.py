"""Prefix tuning (Li & Liang 2021): trainable keys and values prepended to each block's attention.

The NOAH / SHIP supernet (ZhangYuanhan-AI/NOAH `model/supernet_vision_transformer_timm.py`
`Attention`; the SHIP release carries the same parameters) declares per block
`prefix_tokens_key` and `prefix_tokens_value`, each [1, P, D], xavier-uniform (torch's fans of a
[1, P, D] tensor: bound sqrt(6 / ((P + 1)·D))), and concatenates them to the projected keys and
values. That line cannot run as written (it joins the [B, H, N, Dh] keys with the [B, P, D] prefix
on dim 1), no released config sets PREFIX_DIM, and its `prefix_drop` is never called; so no
executed behaviour exists to match. This method implements the evident intent, as prefix tuning
defines it: the prefix is split into heads as the projections are ([P, D] -> [P, H, Dh]) and its
keys / values join every query's softmax, in projected space (no LayerNorm, no projection):

  o = softmax(q · [k; K_p]ᵀ / sqrt(Dh)) · [v; V_p]

The prefix tokens are key/value-only by construction: they issue no query and have no output.
P per block is `prefix.dims` / `prefix.dim` (default 10, the smallest PREFIX_DIM of NOAH's search
space; 0.18M params at ViT-B/16). `prefix.dropout` (default 0: the release never applies its
dropout) drops prefix entries per example. Params: prompt/encoderblock_{i}/{key, value} [P, D].
"""

from __future__ import annotations

import math
from typing import Any

from ml_collections import ConfigDict

import flax.linen as nn
import jax.numpy as jnp

from prompt_jax.methods import _petl
from prompt_jax.methods import base
from prompt_jax.methods import inits
from prompt_jax.methods import torch_names
from prompt_jax.models import attention as attn_lib
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any


class BlockPrefix(nn.Module):
  """One block's prefix: key, value [P, D]."""

  width: int
  length: int

  def setup(self):
    bound = math.sqrt(6.0 / ((self.length + 1) * self.width))  # torch xavier on [1, P, D]
    self.key = self.param('key', inits.uniform(bound), (self.length, self.width))
    self.value = self.param('value', inits.uniform(bound), (self.length, self.width))

  def __call__(self) -> tuple[Array, Array]:
    return self.key, self.value


class PrefixPrompter(Prompter):
  """No tokens: every block with P > 0 attends over its prefix too (an attention kernel)."""

  width: int
  num_heads: int
  dims: tuple[int, ...]
  dropout: float = 0.0

  def setup(self):
    self.encoderblock = {str(i): BlockPrefix(self.width, p)
                         for i, p in enumerate(self.dims) if p}
    self.drop = nn.Dropout(self.dropout)

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    del pool_reads_prompts
    if not self.dims[layer]:
      return Tokens(prev.x)
    pk, pv = self.encoderblock[str(layer)]()
    b, dh = prev.x.shape[0], self.width // self.num_heads
    pk, pv = (jnp.broadcast_to(a.reshape(1, -1, self.num_heads, dh).astype(prev.x.dtype),
                               (b, a.shape[0], self.num_heads, dh)) for a in (pk, pv))
    if train and self.dropout > 0:  # per example
      pk, pv = self.drop(pk, deterministic=False), self.drop(pv, deterministic=False)

    def kernel(q, k, v, *, y, y_fixed, impl):
      del y, y_fixed
      k, v = jnp.concatenate([k, pk], axis=1), jnp.concatenate([v, pv], axis=1)
      return attn_lib.dot_product_attention(q, k, v, None, impl), None, None

    return Tokens(prev.x, kernel=kernel)


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> PrefixPrompter:
  del prepared
  s = config.prefix
  return PrefixPrompter(width=arch.width, num_heads=arch.num_heads,
                        dims=_petl.block_dims(s, 'prefix', arch.depth, config.model.variant),
                        dropout=_petl.check_rate(s.dropout, 'prefix.dropout'))


# The release's names (NOAH `Attention`: [1, P, D] parameters); a block without a prefix has no
# entry.
_NOAH = ([(f'prompt/encoderblock_{{}}/{x}', f'blocks.{{}}.attn.prefix_tokens_{x}',
           lambda v: v[None]) for x in ('key', 'value')],
         [(f'blocks.{{}}.attn.prefix_tokens_{x}', f'prompt/encoderblock_{{}}/{x}',
           lambda v: v.reshape(v.shape[-2:])) for x in ('key', 'value')])


def section(**over: Any) -> ConfigDict:
  """`config.prefix`: 10 key/value prefix tokens per block (no released value), no dropout."""
  c = ConfigDict(dict(dim=10,         # key / value prefix tokens in every block
                      dims=(),        # tokens per block (0: none there)
                      dropout=0.0))   # on the prefix tokens
  c.update(over)
  return c


PREFIX = base.register(base.Method(
    name='prefix',
    model=base.ModelParts(build_prompter=build_prompter,
                          torch_naming=torch_names.paired(_NOAH, 'ZhangYuanhan-AI/NOAH')),
    config_section='prefix', section=section, check=_petl.checker(build_prompter)))
