"""LoRA on the attention projections (Hu et al. 2022), as the NOAH / SHIP supernet executes it.

Release (ZhangYuanhan-AI/NOAH `model/supernet_vision_transformer_timm.py`, `Attention`; the SHIP
release carries the same `LoRA_a` / `LoRA_b` / `LoRA_drop` modules): per block one low-rank update
of the FUSED qkv projection, on the normed block input y:

  (dq, dk, dv) = split(B · A · dropout(y))      A: [D -> r], B: [r -> 3·D], scale 1

A kaiming-uniform(a=√5) (uniform ±1/sqrt(D)), B zeros, so training starts at the backbone;
dropout 0.1 (`--drop_rate_LoRA`), one mask shared by q, k and v; r per block from the retrain
config's LORA_DIM list (8 in every block in NOAH's `ViT-B_prompt_lora_8.yaml`: 0.29M params at
ViT-B/16). Params: prompt/encoderblock_{i}/{lora_a [D, r], lora_b [r, 3·D]}.

Options: `lora.layout='separate'` gives every target projection its own A and B (Hugging Face
peft's `LoraConfig(target_modules=...)`: prompt/encoderblock_{i}/{query,key,value}/{lora_a, lora_b},
each dropout mask its own), `lora.targets` picks the projections (separate layout; the fused one
always updates all three), `lora.scale` multiplies the update (peft: lora_alpha / r).
"""

from __future__ import annotations

import math
from typing import Any

from ml_collections import ConfigDict

import flax.linen as nn

from prompt_jax.methods import _petl
from prompt_jax.methods import base
from prompt_jax.methods import inits
from prompt_jax.methods import torch_names
from prompt_jax.models.deltas import Deltas
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any
PROJECTIONS = ('query', 'key', 'value')


class LowRank(nn.Module):
  """y [..., D] -> dropout(y) · A · B · scale [..., out]; A [D, r] ±1/sqrt(D), B [r, out] zeros."""

  width: int
  rank: int
  out: int
  dropout: float = 0.0
  scale: float = 1.0

  def setup(self):
    self.lora_a = self.param('lora_a', inits.uniform(1.0 / math.sqrt(self.width)),
                             (self.width, self.rank))
    self.lora_b = self.param('lora_b', nn.initializers.zeros, (self.rank, self.out))
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, y: Array, train: bool) -> Array:
    y = self.drop(y, deterministic=not train)
    out = (y @ self.lora_a.astype(y.dtype)) @ self.lora_b.astype(y.dtype)
    return out if self.scale == 1.0 else out * self.scale


class SeparateLoRA(nn.Module):
  """peft's layout: one LowRank per target projection (prompt/encoderblock_{i}/{query,...})."""

  width: int
  rank: int
  targets: tuple[str, ...] = PROJECTIONS
  dropout: float = 0.0
  scale: float = 1.0

  def setup(self):
    make = lambda t: (LowRank(self.width, self.rank, self.width, dropout=self.dropout,
                              scale=self.scale) if t in self.targets else None)
    self.query, self.key, self.value = make('query'), make('key'), make('value')

  def __call__(self, y: Array, train: bool) -> tuple[Array | None, ...]:
    return tuple(None if m is None else m(y, train) for m in (self.query, self.key, self.value))


class LoRAPrompter(Prompter):
  """No tokens: every block with a rank > 0 gets `Deltas(qkv=...)`."""

  width: int
  num_heads: int
  dims: tuple[int, ...]
  layout: str = 'fused'
  targets: tuple[str, ...] = PROJECTIONS
  dropout: float = 0.1
  scale: float = 1.0

  def setup(self):
    kw = dict(dropout=self.dropout, scale=self.scale)
    make = lambda r: (LowRank(self.width, r, 3 * self.width, **kw) if self.layout == 'fused'
                      else SeparateLoRA(self.width, r, targets=self.targets, **kw))
    self.encoderblock = {str(i): make(r) for i, r in enumerate(self.dims) if r}

  def qkv_delta(self, layer: int, y: Array, train: bool) -> tuple[Array | None, ...]:
    """(dq, dk, dv) of block `layer`, each [..., H, Dh] or None."""
    d = self.encoderblock[str(layer)](y, train)
    if self.layout == 'fused':  # [..., 3·D] in the release's (3, H, Dh) order
      d = tuple(d[..., i * self.width:(i + 1) * self.width] for i in range(3))
    heads = (self.num_heads, self.width // self.num_heads)
    return tuple(None if a is None else a.reshape(a.shape[:-1] + heads) for a in d)

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    del pool_reads_prompts
    if not self.dims[layer]:
      return Tokens(prev.x)
    return Tokens(prev.x, deltas=Deltas(qkv=lambda y: self.qkv_delta(layer, y, train)))


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> LoRAPrompter:
  del prepared
  s = config.lora
  if s.layout not in ('fused', 'separate'):
    raise ValueError(f"lora.layout={s.layout!r}: 'fused' (the release) or 'separate' (peft)")
  targets = tuple(s.targets)
  if not targets or set(targets) - set(PROJECTIONS):
    raise ValueError(f'lora.targets={targets}: a non-empty subset of {PROJECTIONS}')
  if s.layout == 'fused' and targets != PROJECTIONS:
    raise ValueError(f"lora.targets={targets} needs lora.layout='separate' (the fused layout "
                     'updates query, key and value together)')
  return LoRAPrompter(width=arch.width, num_heads=arch.num_heads,
                      dims=_petl.block_dims(s, 'lora', arch.depth, config.model.variant),
                      layout=s.layout,
                      targets=targets, dropout=_petl.check_rate(s.dropout, 'lora.dropout'),
                      scale=float(s.scale))


# The release's names (NOAH `Attention`: nn.Linear weights [out, in]); a block without LoRA has
# no entry (NOAH's supernet holds every block at its super dim and slices the first r rows).
_NOAH = torch_names.transposed([
    ('prompt/encoderblock_{}/lora_a', 'blocks.{}.attn.LoRA_a.weight'),     # [r, D]
    ('prompt/encoderblock_{}/lora_b', 'blocks.{}.attn.LoRA_b.weight')])    # [3·D, r]


def _fused_only(config: Any) -> None:
  if config.lora.layout != 'fused':
    raise ValueError(f"lora.layout={config.lora.layout!r} has no name in the release (NOAH's "
                     "LoRA_a / LoRA_b are the fused layout's); export lora.layout='fused' runs")


def section(**over: Any) -> ConfigDict:
  """`config.lora`: rank 8 in every block, dropout 0.1, fused qkv (NOAH's ViT-B_prompt_lora_8)."""
  c = ConfigDict(dict(dim=8,                              # rank in every block
                      dims=(),                            # rank per block (0: none there)
                      dropout=0.1,                        # on the input of A
                      scale=1.0,                          # the update's scale (peft: alpha/r)
                      layout='fused',                     # 'fused' (release) | 'separate' (peft)
                      targets=('query', 'key', 'value')))  # separate layout only
  c.update(over)
  return c


LORA = base.register(base.Method(
    name='lora',
    model=base.ModelParts(
        build_prompter=build_prompter,
        torch_naming=torch_names.paired(_NOAH, 'ZhangYuanhan-AI/NOAH', check=_fused_only)),
    config_section='lora', section=section, check=_petl.checker(build_prompter)))
