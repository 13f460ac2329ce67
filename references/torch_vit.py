"""A plain PyTorch ViT with VPT-deep prompts: the reference the benchmarks compare against.

Same math as prompt_jax's model (pre-LN blocks, exact GELU, LN eps 1e-6, [CLS, prompts, patches],
deep prompts replaced before every block). Only the prompts and the head require grad. Optional
drop path (linear over depth, train mode only) and pool ('cls', 'norm_mean', 'mean_norm' as in
prompt_jax's `model.pool`) so SPT's recipe (drop path 0.1, MAE mean pooling) can be matched.
`state_dict_from_jax` / `load_jax` copy a prompt_jax param tree in for the benchmarks' logit check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class DropPath(nn.Module):
  """Stochastic depth (per example), active only in train mode."""

  def __init__(self, rate: float = 0.0):
    super().__init__()
    self.rate = rate

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if not self.training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) < keep
    return x * mask.to(x.dtype) / keep


class Block(nn.Module):
  def __init__(self, d: int, heads: int, mlp: int, drop_path: float = 0.0):
    super().__init__()
    self.heads = heads
    self.drop_path = DropPath(drop_path)
    self.norm1 = nn.LayerNorm(d, eps=1e-6)
    self.qkv = nn.Linear(d, 3 * d)
    self.proj = nn.Linear(d, d)
    self.norm2 = nn.LayerNorm(d, eps=1e-6)
    self.fc1 = nn.Linear(d, mlp)
    self.fc2 = nn.Linear(mlp, d)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(
        2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
    x = x + self.drop_path(self.proj(y))
    return x + self.drop_path(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


class VPTDeepViT(nn.Module):
  def __init__(self, image=224, patch=16, d=768, depth=12, heads=12, mlp=3072, prompts=50,
               classes=100, drop_path=0.0, pool='cls'):
    super().__init__()
    if pool not in ('cls', 'mean_norm', 'norm_mean'):
      raise ValueError(f'pool {pool!r}')
    self.pool = pool
    self.patch_embed = nn.Conv2d(3, d, patch, patch)
    n = (image // patch) ** 2
    self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
    self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
    self.blocks = nn.ModuleList([Block(d, heads, mlp, drop_path * i / max(depth - 1, 1))
                                 for i in range(depth)])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.prompts = nn.Parameter(torch.empty(depth, prompts, d).uniform_(-0.0625, 0.0625))
    self.head = nn.Linear(d, classes)
    for name, p in self.named_parameters():
      p.requires_grad = name.startswith(('prompts', 'head'))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = self.patch_embed(images).flatten(2).transpose(1, 2)
    b, p = x.shape[0], self.prompts.shape[1]
    x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1) + self.pos_embed
    for i, blk in enumerate(self.blocks):
      prm = self.prompts[i].expand(b, -1, -1)
      rest = x[:, 1:] if i == 0 else x[:, 1 + p:]
      x = blk(torch.cat([x[:, :1], prm, rest], 1))
    if self.pool == 'cls':
      return self.head(self.norm(x)[:, 0])
    if self.pool == 'norm_mean':  # final norm, then mean of tokens[1:] (prompts included)
      return self.head(self.norm(x)[:, 1:].mean(1))
    return self.head(self.norm(x[:, 1:].mean(1)))  # mean_norm

  def load_jax(self, params: Any) -> None:
    """Copies a prompt_jax VPT-deep param tree (backbone, head, prompt/prompts) (strict)."""
    sd = state_dict_from_jax(self, params)
    sd['prompts'] = torch.as_tensor(np.array(params['prompt']['prompts'], np.float32))
    self.load_state_dict(sd, strict=True)


def state_dict_from_jax(model: nn.Module, params: Any) -> dict[str, torch.Tensor]:
  """Backbone + head entries of `model.state_dict()` from a prompt_jax / original-ViT .npz tree
  (nested dicts of arrays: embedding, cls, Transformer/..., head). qkv is either one fused Linear
  with bias (`Block`) or a bias-free fused weight plus q_bias/k_bias/v_bias (split biases)."""
  t = lambda a: torch.as_tensor(np.array(a, np.float32))
  own = model.state_dict()
  sd = {'patch_embed.weight': t(params['embedding']['kernel']).permute(3, 2, 0, 1),
        'patch_embed.bias': t(params['embedding']['bias']), 'cls_token': t(params['cls'])}
  tr = params['Transformer']
  sd['pos_embed'] = t(tr['posembed_input']['pos_embedding'])
  for i in range(len(model.blocks)):
    blk, p = tr[f'encoderblock_{i}'], f'blocks.{i}.'
    att = blk['MultiHeadDotProductAttention_1']
    d = att['query']['kernel'].shape[0]
    sd[p + 'qkv.weight'] = torch.cat([t(att[n]['kernel']).reshape(d, d).T
                                      for n in ('query', 'key', 'value')])
    biases = [t(att[n]['bias']).reshape(d) for n in ('query', 'key', 'value')]
    if p + 'qkv.bias' in own:
      sd[p + 'qkv.bias'] = torch.cat(biases)
    else:
      sd[p + 'q_bias'], sd[p + 'k_bias'], sd[p + 'v_bias'] = biases
    sd[p + 'proj.weight'] = t(att['out']['kernel']).reshape(d, d).T
    sd[p + 'proj.bias'] = t(att['out']['bias'])
    for ln, name in (('LayerNorm_0', 'norm1'), ('LayerNorm_2', 'norm2')):
      sd[p + name + '.weight'], sd[p + name + '.bias'] = t(blk[ln]['scale']), t(blk[ln]['bias'])
    for dn, name in (('Dense_0', 'fc1'), ('Dense_1', 'fc2')):
      sd[p + name + '.weight'] = t(blk['MlpBlock_3'][dn]['kernel']).T
      sd[p + name + '.bias'] = t(blk['MlpBlock_3'][dn]['bias'])
  sd['norm.weight'] = t(tr['encoder_norm']['scale'])
  sd['norm.bias'] = t(tr['encoder_norm']['bias'])
  sd['head.weight'], sd['head.bias'] = t(params['head']['kernel']).T, t(params['head']['bias'])
  return sd


def trainable_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)
