"""Bottleneck adapters (Houlsby et al. 2019), as the NOAH / SHIP supernet executes them.

Release (ZhangYuanhan-AI/NOAH `model/module/adapter_super.py` `AdapterSuper`, placed by
`supernet_vision_transformer_timm.py` `Block.forward`; the SHIP release carries the same module):
one adapter per block on the MLP output, after the drop path, inside the residual:

  h = DropPath(MLP(LN_2(x)));   x = x + h + up(dropout(QuickGELU(down(h))))

down: Linear D -> r, up: Linear r -> D, weights xavier-uniform, biases N(0, 1e-6); dropout 0.1
(`--drop_rate_adapter`); r per block from the retrain config's ADAPTER_DIM list (8 in every block
in NOAH's `ViT-B_prompt_adapter_8.yaml`: 0.16M params at ViT-B/16).
Params: prompt/encoderblock_{i}/{mlp}/{down, up}/{kernel, bias}.

Options: `adapter.positions=('attn', 'mlp')` adds a second adapter on the attention output (the
Houlsby placement; prompt/encoderblock_{i}/attn/...), `adapter.act` ('quick_gelu' as the release,
'gelu', 'relu').
"""

from __future__ import annotations

from typing import Any

from ml_collections import ConfigDict

import flax.linen as nn
import jax

from prompt_jax.methods import _petl
from prompt_jax.methods import base
from prompt_jax.methods import torch_names
from prompt_jax.models import vit
from prompt_jax.models.deltas import Deltas
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any
POSITIONS = ('attn', 'mlp')
ACTIVATIONS = {'quick_gelu': vit.quick_gelu, 'gelu': vit.gelu(False), 'relu': jax.nn.relu}


class Adapter(nn.Module):
  """h [..., D] -> up(dropout(act(down(h)))) [..., D] (the residual is added by the block)."""

  width: int
  dim: int
  dropout: float = 0.0
  act: str = 'quick_gelu'

  def setup(self):
    kw = dict(kernel_init=nn.initializers.xavier_uniform(),
              bias_init=nn.initializers.normal(1e-6))
    self.down = nn.Dense(self.dim, **kw)
    self.up = nn.Dense(self.width, **kw)
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, h: Array, train: bool) -> Array:
    z = self.drop(ACTIVATIONS[self.act](self.down(h)), deterministic=not train)
    return self.up(z)


class BlockAdapters(nn.Module):
  """One block's adapters: prompt/encoderblock_{i}/{attn, mlp}."""

  width: int
  dim: int
  positions: tuple[str, ...] = ('mlp',)
  dropout: float = 0.0
  act: str = 'quick_gelu'

  def setup(self):
    make = lambda p: (Adapter(self.width, self.dim, dropout=self.dropout, act=self.act)
                      if p in self.positions else None)
    self.attn, self.mlp = make('attn'), make('mlp')

  def deltas(self, train: bool) -> Deltas:
    fn = lambda m: None if m is None else (lambda h: m(h, train))
    return Deltas(attn=fn(self.attn), mlp=fn(self.mlp))


class AdapterPrompter(Prompter):
  """No tokens: every block with a dim > 0 gets `Deltas(mlp=...)` (and `attn=` if asked)."""

  width: int
  dims: tuple[int, ...]
  positions: tuple[str, ...] = ('mlp',)
  dropout: float = 0.1
  act: str = 'quick_gelu'

  def setup(self):
    self.encoderblock = {
        str(i): BlockAdapters(self.width, r, positions=self.positions, dropout=self.dropout,
                              act=self.act)
        for i, r in enumerate(self.dims) if r}

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    del pool_reads_prompts
    if not self.dims[layer]:
      return Tokens(prev.x)
    return Tokens(prev.x, deltas=self.encoderblock[str(layer)].deltas(train))


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> AdapterPrompter:
  del prepared
  s = config.adapter
  positions = tuple(s.positions)
  if not positions or set(positions) - set(POSITIONS) or len(set(positions)) < len(positions):
    raise ValueError(f'adapter.positions={positions}: a non-empty subset of {POSITIONS}')
  if s.act not in ACTIVATIONS:
    raise ValueError(f'adapter.act={s.act!r}; known: {sorted(ACTIVATIONS)}')
  return AdapterPrompter(width=arch.width,
                         dims=_petl.block_dims(s, 'adapter', arch.depth, config.model.variant),
                         positions=positions, act=s.act,
                         dropout=_petl.check_rate(s.dropout, 'adapter.dropout'))


# The release's names (NOAH `Block.adapter`, an `AdapterSuper`: ln1 = down, ln2 = up; nn.Linear
# weights [out, in]); a block without an adapter has no entry.
_NOAH = torch_names.transposed([
    ('prompt/encoderblock_{}/mlp/down/kernel', 'blocks.{}.adapter.ln1.weight'),  # [r, D]
    ('prompt/encoderblock_{}/mlp/down/bias', 'blocks.{}.adapter.ln1.bias'),
    ('prompt/encoderblock_{}/mlp/up/kernel', 'blocks.{}.adapter.ln2.weight'),    # [D, r]
    ('prompt/encoderblock_{}/mlp/up/bias', 'blocks.{}.adapter.ln2.bias')])


def _mlp_only(config: Any) -> None:
  if 'attn' in tuple(config.adapter.positions):
    raise ValueError(f'adapter.positions={tuple(config.adapter.positions)}: the release has one '
                     "adapter per block, after the MLP; the attention adapter has no release name")


def section(**over: Any) -> ConfigDict:
  """`config.adapter`: bottleneck 8 in every block after the MLP, QuickGELU, dropout 0.1."""
  c = ConfigDict(dict(dim=8,                              # bottleneck width in every block
                      dims=(),                            # width per block (0: none there)
                      dropout=0.1,                        # after the activation
                      act='quick_gelu',                   # the bottleneck's activation
                      positions=('mlp',)))                # ('attn', 'mlp'): Houlsby's two
  c.update(over)
  return c


ADAPTER = base.register(base.Method(
    name='adapter',
    model=base.ModelParts(
        build_prompter=build_prompter,
        torch_naming=torch_names.paired(_NOAH, 'ZhangYuanhan-AI/NOAH', check=_mlp_only)),
    config_section='adapter', section=section, check=_petl.checker(build_prompter)))
