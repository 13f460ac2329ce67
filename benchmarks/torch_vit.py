"""A plain PyTorch ViT with VPT-deep prompts: the reference the benchmarks compare against.

Same math as prompt_jax's model (pre-LN blocks, exact GELU, LN eps 1e-6, [CLS, prompts, patches],
deep prompts replaced before every block). Only the prompts and the head require grad.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class Block(nn.Module):
  def __init__(self, d: int, heads: int, mlp: int):
    super().__init__()
    self.heads = heads
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
    x = x + self.proj(y)
    return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VPTDeepViT(nn.Module):
  def __init__(self, image=224, patch=16, d=768, depth=12, heads=12, mlp=3072, prompts=50,
               classes=100):
    super().__init__()
    self.patch_embed = nn.Conv2d(3, d, patch, patch)
    n = (image // patch) ** 2
    self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
    self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
    self.blocks = nn.ModuleList([Block(d, heads, mlp) for _ in range(depth)])
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
    return self.head(self.norm(x)[:, 0])
