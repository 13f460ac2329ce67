"""BitFit (Ben Zaken et al. 2022): every bias of the frozen backbone trains, plus the head.

Biases are the params named `bias`: the patch embedding's, every q/k/v/out projection's, both MLP
layers', every LayerNorm's and the final norm's (at ViT-B/16 102,912 = the 0.10M the VTAB tables
print for BitFit; without the LayerNorm biases it would be 83,712). No prompter: the model is the
plain ViT; the masked optimizer trains the matching paths (biases and 1-D params take no weight
decay, as everywhere in the trainer). `config.train.trainable` replaces the patterns.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from prompt_jax.methods import base
from prompt_jax.methods import torch_names

TRAINABLE = (r'(^|/)bias$', r'^head/')

# PyTorch names: timm's VisionTransformer (which the NOAH / SHIP releases fork), fused qkv bias
# [3·D] = (q, k, v), each [H·Dh].
_BLOCK = 'Transformer/encoderblock_{}/'
_MHA = _BLOCK + 'MultiHeadDotProductAttention_1/'
_TIMM = [('embedding/bias', 'patch_embed.proj.bias'),
         (_MHA + 'out/bias', 'blocks.{}.attn.proj.bias'),
         (_BLOCK + 'LayerNorm_0/bias', 'blocks.{}.norm1.bias'),
         (_BLOCK + 'LayerNorm_2/bias', 'blocks.{}.norm2.bias'),
         (_BLOCK + 'MlpBlock_3/Dense_0/bias', 'blocks.{}.mlp.fc1.bias'),
         (_BLOCK + 'MlpBlock_3/Dense_1/bias', 'blocks.{}.mlp.fc2.bias'),
         ('Transformer/encoder_norm/bias', 'norm.bias')]
_QKV = ('query', 'key', 'value')


def _bitfit_fwd(t: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  out = {}
  blocks = sorted({int(m.group(1)) for k in t
                   if (m := re.fullmatch(r'Transformer/encoderblock_(\d+)/'
                                         r'MultiHeadDotProductAttention_1/(?:query|key|value)/bias',
                                         k))})
  for i in blocks:
    names = [_MHA.format(i) + f'{n}/bias' for n in _QKV]
    if not all(n in t for n in names):  # timm fuses them: all three or none
      raise ValueError(f'block {i}: timm\'s fused attn.qkv.bias needs the query, key and value '
                       f'biases; the export has only {[n for n in names if n in t]}')
    out[f'blocks.{i}.attn.qkv.bias'] = np.concatenate([t.pop(n).reshape(-1) for n in names])
  out.update(torch_names.convert(t, [(a, b, lambda v: v) for a, b in _TIMM]))
  return {**out, **torch_names.head('head')[0](t)}


def _bitfit_inv(sd: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  heads = BITFIT.arch(config).num_heads
  out = {}
  for key in sorted(sd):
    if m := re.fullmatch(r'blocks\.(\d+)\.attn\.qkv\.bias', key):
      for n, b in zip(_QKV, np.split(sd.pop(key), 3)):
        out[_MHA.format(m.group(1)) + f'{n}/bias'] = b.reshape(heads, -1)
  out.update(torch_names.convert(sd, [(b, a, lambda v: v) for a, b in _TIMM]))
  return {**out, **torch_names.head('head')[1](sd)}


BITFIT = base.register(base.Method(
    name='bitfit',
    model=base.ModelParts(
        torch_naming=torch_names.TorchNaming(_bitfit_fwd, _bitfit_inv, 'timm VisionTransformer')),
    recipe=base.Recipe(trainable=TRAINABLE)))
