"""VPT shallow / deep (Jia et al. 2022), per docs/specs/01-vit-vtab-vpt.md §VPT.

Token layout [CLS, P prompts, patches]; prompts are inserted after the position embedding and get
none. Shallow: one prompt set before block 0, carried through. Deep: before every block i >= 1 the
tokens at the prompt positions are replaced by that layer's prompts ([depth, P, D] in total).
Init uniform(-v, v), v = sqrt(6 / (3·patch² + D)) (0.0625 for ViT-B/16); with a projection
(`project_dim` > 0) prompts live in project_dim and a Dense maps them to D, v uses project_dim.
Prompt dropout (`vpt.dropout`) is applied after the prompts are broadcast to the batch, so every
example gets its own mask (the release's `incorporate_prompt` / `forward_deep_prompt`).

Live tokens (`model.live_tokens`, default True; exact): deep prompts are replaced after every block,
so in every block they are key/value-only ([CLS, patches] live, the prompts only give keys and
values), except in the last block when the pool reads them (MAE mean over tokens[1:]). Shallow
prompts are live up to the last block, where they are key/value-only unless the pool reads them.
`live_tokens=False` computes every token in every block, as the release does.
"""

from __future__ import annotations

import math
from typing import Any

from ml_collections import ConfigDict

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import checks
from prompt_jax.methods import base
from prompt_jax.methods import torch_names
from prompt_jax.methods import inits
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

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
  live_tokens: bool = True

  def setup(self):
    dim = self.project_dim or self.width
    v = math.sqrt(6.0 / (3 * self.patch_size ** 2 + dim))
    n = self.depth if self.deep else 1
    self.prompts = self.param('prompts', inits.uniform(v), (n, self.num_prompts, dim))
    self.proj = nn.Dense(self.width, name='proj') if self.project_dim else None
    self.drop = nn.Dropout(self.dropout)

  def layer_prompts(self, layer: int) -> Array:
    """[P, D] prompts of `layer` after the projection."""
    p = self.prompts[layer]
    return p if self.proj is None else self.proj(p)

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    x, n = prev.x, self.num_prompts
    last = layer == self.depth - 1
    # A block's prompt outputs are read by the next block (shallow) or by the pool (last block).
    read = (not self.deep and not last) or (last and pool_reads_prompts)
    kv_only = self.live_tokens and not read
    if self.deep or layer == 0:  # fresh prompts; live path: x = [CLS, patches]
      p = self.layer_prompts(layer).astype(x.dtype)
      if train and self.dropout > 0:
        # Dropout after the broadcast (the release): every example gets its own [P, D] mask.
        p = self.drop(jnp.broadcast_to(p[None], (x.shape[0],) + p.shape), deterministic=False)
      if kv_only:
        return Tokens(x, kv=p)  # [P, D] shared by the batch when no dropout mask differs
      if p.ndim == 2:
        p = jnp.broadcast_to(p[None], (x.shape[0],) + p.shape)
      rest = x[:, 1:] if layer == 0 or self.live_tokens else x[:, 1 + n:]
      return Tokens(jnp.concatenate([x[:, :1], p, rest], axis=1))
    if kv_only:  # shallow, last block: x = [CLS, prompts, patches]
      return Tokens(jnp.concatenate([x[:, :1], x[:, 1 + n:]], axis=1), kv=x[:, 1:1 + n])
    return Tokens(x)


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> VPTPrompter:
  del prepared
  p = config.vpt
  return VPTPrompter(num_prompts=p.num_prompts, width=arch.width, depth=arch.depth,
                     patch_size=arch.patch_size, deep=p.deep, dropout=p.dropout,
                     project_dim=p.project_dim, live_tokens=config.model.live_tokens)


def prompt_slots(config: base.Config, arch: base.Arch, prepared: Any
                 ) -> dict[str, tuple[int, ...]]:
  del prepared
  return {'prompt/prompts': tuple(range(arch.depth)) if config.vpt.deep else (0,)}


def variant(config: base.Config) -> str:
  """'vpt_deep' | 'vpt_shallow'."""
  return 'vpt_deep' if config.vpt.deep else 'vpt_shallow'


def check(c: base.Config) -> list[str]:
  """`config.vpt`: num_prompts >= 1, dropout in [0, 1), project_dim >= 0."""
  return (checks.at_least('vpt.num_prompts', c.vpt.num_prompts, 1)
          + checks.fraction('vpt.dropout', c.vpt.dropout)
          + checks.at_least('vpt.project_dim', c.vpt.project_dim, 0))


def _vpt_fwd(t: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  p = t.pop('prompt/prompts')
  out = {'enc.transformer.prompt_embeddings': p[:1]}
  if config.vpt.deep and p.shape[0] > 1:
    out['enc.transformer.deep_prompt_embeddings'] = p[1:]
  if 'prompt/proj/kernel' in t:
    out['enc.transformer.prompt_proj.weight'] = t.pop('prompt/proj/kernel').T
    out['enc.transformer.prompt_proj.bias'] = t.pop('prompt/proj/bias')
  return {**out, **torch_names.head('head.last_layer')[0](t)}


def _vpt_inv(sd: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  parts = [sd.pop('enc.transformer.prompt_embeddings')]
  if 'enc.transformer.deep_prompt_embeddings' in sd:
    parts.append(sd.pop('enc.transformer.deep_prompt_embeddings'))
    if parts[0].shape[1:] != parts[1].shape[1:]:
      raise ValueError(f'enc.transformer.prompt_embeddings {parts[0].shape} and '
                       f'deep_prompt_embeddings {parts[1].shape} differ in [P, D]')
  out = {'prompt/prompts': np.concatenate(parts, 0)}
  if 'enc.transformer.prompt_proj.weight' in sd:
    out['prompt/proj/kernel'] = sd.pop('enc.transformer.prompt_proj.weight').T
    out['prompt/proj/bias'] = sd.pop('enc.transformer.prompt_proj.bias')
  return {**out, **torch_names.head('head.last_layer')[1](sd)}


def section(num_prompts: int = 50, deep: bool = True, dropout: float = 0.1,
        project_dim: int = 0) -> ConfigDict:
  """`config.vpt` (VPT and SPT): prompt count, deep/shallow, prompt dropout, optional projection."""
  return ConfigDict(dict(num_prompts=num_prompts,  # prompt tokens P (per block when deep)
                         deep=deep,                # prompts in every block, else the first only
                         dropout=dropout,          # prompt dropout, one mask per example
                         project_dim=project_dim))  # > 0: prompts in this dim, projected to D


VPT = base.register(base.Method(
    name='vpt',
    model=base.ModelParts(build_prompter=build_prompter, prompt_slots=prompt_slots,
                          torch_naming=torch_names.TorchNaming(_vpt_fwd, _vpt_inv, 'KMnP/vpt')),
    evaluation=base.Evaluation(variant=variant),
    config_section='vpt', section=section, check=check))
