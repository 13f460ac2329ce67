"""PyTorch SHIP (spec 02) in training mode: the benchmark's reference for prompt_jax's SHIP row.

Written from the spec, independently of prompt_jax (nothing here imports it). ViT as in
`torch_vit` (pre-LN, exact GELU, LN eps 1e-6, no position embedding on prompts). Tokens entering
block i: [CLS, patches (n-1), independent (P), (attribute 10), shared (10)]:
  - i an anchor: keep the n image tokens, append that anchor's independent prompt, the attribute
    prompt at the last two anchors (i > 0), then the shared prompt;
  - otherwise: drop the last 10 tokens (old shared) and append the shared prompt again, so the
    independent / attribute prompts are carried over until the next anchor.
Attribute prompt k (0 at the second-to-last anchor, 1 at the last): top-10 image tokens of the
previous block's output by head-averaged pre-softmax CLS scores (CLS may be picked) -> softmax over
the 200 prototypes of cos(token, prototype) -> 0.1·(w @ bank) + 0.9·attribute[k].
Decoupled attention in every block: image queries get (1-w)·softmax over image keys + w·softmax over
prompt keys (w = 0.1, two softmaxes); prompt tokens issue no queries (their attention output is
their normed input) except in the last block, where they use one joint softmax over all keys.
Loss = CE + 0.5·matching loss (last block output, pre-norm: mean over prompts of min over the
top-10 image tokens of 1 - cos). Only the prompts and the head require grad; the bank is a buffer.
Attention uses `F.scaled_dot_product_attention`; the CLS-row scores are formed separately (1×T)
only where an attribute prompt or the matching loss needs them.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from references.torch_vit import Block, DropPath, state_dict_from_jax

NUM_SHARED = 10
NUM_ATTRIBUTE = 10
TOP_K = 10


def _unit(x: torch.Tensor) -> torch.Tensor:
  return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def topk_tokens(x: torch.Tensor, cls_scores: torch.Tensor, n: int, k: int = TOP_K) -> torch.Tensor:
  """x [B, T, D], cls_scores [B, H, T] -> the k tokens of x[:, :n] with the top head-mean score."""
  idx = cls_scores[:, :, :n].mean(1).topk(k, dim=-1).indices
  return torch.gather(x[:, :n], 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def matching_loss(x: torch.Tensor, cls_scores: torch.Tensor, n: int) -> torch.Tensor:
  v = topk_tokens(x, cls_scores, n)
  cos = _unit(x[:, n:]) @ _unit(v).transpose(1, 2)
  return (1.0 - cos).min(-1).values.mean()


class DecoupledBlock(Block):

  def __init__(self, d: int, heads: int, mlp: int, drop_path: float = 0.0):
    super().__init__(d, heads, mlp)
    self.drop_path = DropPath(drop_path)

  def forward(self, x: torch.Tensor, n: int, w: float, prompt_queries: bool, want_scores: bool
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    b, t, d = x.shape
    h = self.heads
    y = self.norm1(x)
    q, k, v = self.qkv(y).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)   # [B, H, T, Dh]
    qz = q[:, :, :n]
    out_z = ((1.0 - w) * F.scaled_dot_product_attention(qz, k[:, :, :n], v[:, :, :n]) +
             w * F.scaled_dot_product_attention(qz, k[:, :, n:], v[:, :, n:]))
    if prompt_queries:
      out_p = F.scaled_dot_product_attention(q[:, :, n:], k, v)
      out = torch.cat([out_z, out_p], 2).transpose(1, 2).reshape(b, t, d)
    else:
      out = torch.cat([out_z.transpose(1, 2).reshape(b, n, d), y[:, n:]], 1)
    scores = None
    if want_scores:  # pre-softmax CLS row over all keys, [B, H, T]
      scores = (q[:, :, :1] @ k.transpose(-1, -2))[:, :, 0] / math.sqrt(d // h)
    x = x + self.drop_path(self.proj(out))
    x = x + self.drop_path(self.fc2(F.gelu(self.fc1(self.norm2(x)))))
    return x, scores


class SHIPViT(nn.Module):

  def __init__(self, anchors: Sequence[int], bank: Any, image=224, patch=16, d=768, depth=12,
               heads=12, mlp=3072, prompts=50, classes=100, drop_path=0.0, prompt_weight=0.1,
               bank_weight=0.1, match_weight=0.5):
    super().__init__()
    self.anchors = tuple(int(a) for a in anchors)
    if not self.anchors or self.anchors[0] != 0:
      raise ValueError(f'anchors must start at layer 0, got {self.anchors}')
    self.n = (image // patch) ** 2 + 1
    self.prompt_weight, self.bank_weight = prompt_weight, bank_weight
    self.match_weight = match_weight
    self.patch_embed = nn.Conv2d(3, d, patch, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
    self.pos_embed = nn.Parameter(torch.randn(1, self.n, d) * 0.02)
    self.blocks = nn.ModuleList([DecoupledBlock(d, heads, mlp, drop_path * i / max(depth - 1, 1))
                                 for i in range(depth)])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.head = nn.Linear(d, classes)
    u = lambda shape, bound: nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
    self.independent = u((len(self.anchors), prompts, d), math.sqrt(6.0 / (prompts + d)))
    self.shared = u((NUM_SHARED, d), math.sqrt(6.0 / d))
    self.attribute = u((2, NUM_ATTRIBUTE, d), math.sqrt(6.0 / (NUM_ATTRIBUTE * d)))
    self.register_buffer('bank', torch.as_tensor(np.array(bank, np.float32)))
    for name, p in self.named_parameters():
      p.requires_grad = name.startswith(('independent', 'shared', 'attribute', 'head'))
    # layers that build an attribute prompt from the previous block's CLS scores
    self.attr_layers = {a for a in self.anchors[-2:] if a > 0}

  def _attribute(self, slot: int, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    z = topk_tokens(x, scores, self.n)
    w = torch.softmax(_unit(z) @ _unit(self.bank).T, dim=-1)
    return self.bank_weight * (w @ self.bank) + (1 - self.bank_weight) * self.attribute[slot]

  def forward(self, images: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images [B, 3, H, W] -> (logits, last block output [B, T, D], its CLS scores [B, H, T])."""
    x = self.patch_embed(images).flatten(2).transpose(1, 2)
    b = x.shape[0]
    x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1) + self.pos_embed
    shared = self.shared.expand(b, -1, -1)
    last, scores = len(self.blocks) - 1, None
    for i, blk in enumerate(self.blocks):
      if i in self.anchors:
        a = self.anchors.index(i)
        parts = [x[:, :self.n], self.independent[a].expand(b, -1, -1)]
        slot = a - (len(self.anchors) - 2)
        if i in self.attr_layers:
          parts.append(self._attribute(slot, x, scores))
        parts.append(shared)
        x = torch.cat(parts, 1)
      else:
        x = torch.cat([x[:, :-NUM_SHARED], shared], 1)
      x, scores = blk(x, self.n, self.prompt_weight, prompt_queries=i == last,
                      want_scores=(i + 1) in self.attr_layers or i == last)
    return self.head(self.norm(x)[:, 0]), x, scores

  def loss(self, images: torch.Tensor, labels: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, x, scores = self(images)
    lm = matching_loss(x, scores, self.n)
    return F.cross_entropy(logits, labels) + self.match_weight * lm, logits, lm

  def load_jax(self, params: Any) -> None:
    """Copies a prompt_jax SHIP param tree (backbone, head, prompt/{independent, shared,
    attribute, bank}) into this model (strict)."""
    sd = state_dict_from_jax(self, params)
    pr = params['prompt']
    for k in ('independent', 'shared', 'attribute', 'bank'):
      sd[k] = torch.as_tensor(np.array(pr[k], np.float32))
    self.load_state_dict(sd, strict=True)


def train_step(model: SHIPViT, images: torch.Tensor, labels: torch.Tensor, lr: float = 1e-3,
               wd: float = 1e-3):
  """AdamW (eps 1e-8) over the trainable params, wd on all but the head bias (the SHIP recipe)."""
  named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
  decay = [p for n, p in named if n != 'head.bias']
  no_decay = [p for n, p in named if n == 'head.bias']
  opt = torch.optim.AdamW([{'params': decay, 'weight_decay': wd},
                           {'params': no_decay, 'weight_decay': 0.0}],
                          lr=lr, eps=1e-8)

  def run():
    opt.zero_grad(set_to_none=True)
    loss, _, _ = model.loss(images, labels)
    loss.backward()
    opt.step()

  return run
