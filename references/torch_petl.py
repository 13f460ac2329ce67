"""PyTorch transcription of the parameter-efficient blocks of the NOAH supernet, which the SHIP
release forks (ZhangYuanhan-AI/NOAH `model/supernet_vision_transformer_timm.py`: `Attention`
L206-297, `Block.forward` L354-366; `model/module/adapter_super.py` `AdapterSuper`), written for
the parity tests of prompt_jax.methods.{lora, adapter, prefix}; not the release's code.

Transcribed formulas (B = batch, N = tokens, H heads, Dh = D / H):
  Attention:  q, k, v = qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
              LoRA:    q, k, v += (LoRA_b(LoRA_a(LoRA_drop(x)))).reshape(B, N, 3, H, Dh)...
              prefix:  k, v = cat(k, prefix_key), cat(v, prefix_value) over the key axis; the
                       release's line concatenates the [B, P, D] prefix to the heads-first
                       [B, H, N, Dh] keys, which cannot run: here the prefix is split into heads as
                       qkv is ([P, D] -> [H, P, Dh]), the evident intent.
  Block:      x = x + drop_path(attn(norm1(x)))
              x = x + adapter(drop_path(mlp(norm2(x))))   adapter(h) = h + ln2(drop(act(ln1(h))))
  AdapterSuper: ln1 Linear D->r, QuickGELU, dropout, ln2 Linear r->D; xavier-uniform weights,
              N(0, 1e-6) biases. LoRA_a kaiming_uniform_(a=√5), LoRA_b zeros. Prefix tokens
              [1, P, D] xavier-uniform.
Dropouts are the release's (0.1 for LoRA and the adapter); the parity tests run in eval mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from references import torch_vit


class QuickGELU(nn.Module):
  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class Adapter(nn.Module):
  def __init__(self, d: int, r: int, drop: float = 0.1):
    super().__init__()
    self.ln1, self.ln2 = nn.Linear(d, r), nn.Linear(r, d)
    self.act, self.dropout = QuickGELU(), nn.Dropout(drop)
    for m in (self.ln1, self.ln2):
      nn.init.xavier_uniform_(m.weight)
      nn.init.normal_(m.bias, std=1e-6)

  def forward(self, h: torch.Tensor) -> torch.Tensor:
    return h + self.ln2(self.dropout(self.act(self.ln1(h))))


class PETLBlock(torch_vit.Block):
  """torch_vit.Block (fused qkv with bias) + LoRA / prefix / adapter of the given dims."""

  def __init__(self, d: int, heads: int, mlp: int, lora: int = 0, prefix: int = 0,
               adapter: int = 0, drop: float = 0.1):
    super().__init__(d, heads, mlp)
    self.lora_dim, self.prefix_dim, self.adapter_dim = lora, prefix, adapter
    if lora:
      self.LoRA_a = nn.Linear(d, lora, bias=False)
      nn.init.kaiming_uniform_(self.LoRA_a.weight, a=math.sqrt(5))
      self.LoRA_b = nn.Linear(lora, 3 * d, bias=False)
      nn.init.zeros_(self.LoRA_b.weight)
      self.LoRA_drop = nn.Dropout(drop)
    if prefix:
      self.prefix_tokens_key = nn.Parameter(torch.zeros(1, prefix, d))
      self.prefix_tokens_value = nn.Parameter(torch.zeros(1, prefix, d))
      nn.init.xavier_uniform_(self.prefix_tokens_key)
      nn.init.xavier_uniform_(self.prefix_tokens_value)
    self.adapter = Adapter(d, adapter, drop) if adapter else nn.Identity()

  def attn(self, x: torch.Tensor) -> torch.Tensor:
    b, n, d = x.shape
    h, dh = self.heads, d // self.heads
    q, k, v = self.qkv(x).reshape(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
    if self.lora_dim:
      delta = self.LoRA_b(self.LoRA_a(self.LoRA_drop(x)))
      dq, dk, dv = delta.reshape(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
      q, k, v = q + dq, k + dk, v + dv
    if self.prefix_dim:
      heads = lambda p: p.reshape(1, -1, h, dh).permute(0, 2, 1, 3).expand(b, -1, -1, -1)
      k = torch.cat([k, heads(self.prefix_tokens_key)], dim=2)
      v = torch.cat([v, heads(self.prefix_tokens_value)], dim=2)
    attn = ((q @ k.transpose(-2, -1)) * dh ** -0.5).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.drop_path(self.attn(self.norm1(x)))
    return x + self.adapter(self.drop_path(self.fc2(F.gelu(self.fc1(self.norm2(x))))))


class PETLViT(nn.Module):
  """ViT (CLS pool) with PETLBlocks; only the LoRA / prefix / adapter params and the head train."""

  def __init__(self, image: int = 32, patch: int = 8, d: int = 64, depth: int = 4, heads: int = 4,
               mlp: int = 128, classes: int = 10, lora=(), prefix=(), adapter=()):
    super().__init__()
    dims = lambda v: tuple(v) or (0,) * depth
    self.patch_embed = nn.Conv2d(3, d, patch, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
    self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, d))
    self.blocks = nn.ModuleList([PETLBlock(d, heads, mlp, lo, pr, ad) for lo, pr, ad in
                                 zip(dims(lora), dims(prefix), dims(adapter))])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.head = nn.Linear(d, classes)
    for name, p in self.named_parameters():
      p.requires_grad = any(s in name for s in ('LoRA', 'prefix', 'adapter', 'head'))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = self.patch_embed(images).flatten(2).transpose(1, 2)
    x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
    for blk in self.blocks:
      x = blk(x)
    return self.head(self.norm(x)[:, 0])

  def load_jax(self, params: Any) -> None:
    """Copies a prompt_jax lora / prefix / adapter param tree (backbone, head, prompt/) (strict)."""
    t = lambda a: torch.as_tensor(np.array(a, np.float32))
    sd = torch_vit.state_dict_from_jax(self, params)
    for i, blk in enumerate(self.blocks):
      p, ours = f'blocks.{i}.', params.get('prompt', {}).get(f'encoderblock_{i}', {})
      if blk.lora_dim:
        sd[p + 'LoRA_a.weight'], sd[p + 'LoRA_b.weight'] = t(ours['lora_a']).T, t(ours['lora_b']).T
      if blk.prefix_dim:
        sd[p + 'prefix_tokens_key'] = t(ours['key'])[None]
        sd[p + 'prefix_tokens_value'] = t(ours['value'])[None]
      if blk.adapter_dim:
        for theirs, mine in (('ln1', 'down'), ('ln2', 'up')):
          sd[p + f'adapter.{theirs}.weight'] = t(ours['mlp'][mine]['kernel']).T
          sd[p + f'adapter.{theirs}.bias'] = t(ours['mlp'][mine]['bias'])
    self.load_state_dict(sd, strict=True)

  def trainable(self) -> dict[str, torch.Tensor]:
    return {n: p for n, p in self.named_parameters() if p.requires_grad}
