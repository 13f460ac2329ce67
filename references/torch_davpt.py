"""PyTorch DA-VPT (spec 03) in training mode: the benchmark's reference for prompt_jax's DA-VPT row.

Written from the spec, independently of prompt_jax (nothing here imports it). Deep prompts: block i
sees [CLS, prompts_i, patches] (the previous block's prompt outputs are dropped); proxy layers
[proxy_start, proxy_end] carry one proxy prompt per class cluster (P), the other layers `num_other`
prompts. At each proxy layer the CLS anchor is CLS's full query [B, D] and the patch anchor the
mean of the block-input patch tokens (pre-LN, 'input_mean'); both go through the proxy-anchor loss
against the l2-normalised proxies, positives = samples whose class maps (class_map) to the proxy:

  L = CE + λ_patch·mean_l L_pa(patch anchor) + λ_cls·mean_l L_pa(CLS anchor)
  L_pa = mean_p log(1 + Σ_pos exp(-α(s - δ+))) + mean_p log(1 + Σ_neg exp(α(s - δ-))), s = r·cos.

Pool: 'cls' (CLS after the final norm) or 'norm_mean' (final norm, then mean of tokens[1:],
prompts included: the MAE head). Trainable: prompts, head, the patch-embedding bias (the release's
'proj.bias' name match also hits patch_embed.proj.bias), and the biases of v, proj, fc2 and norm2
(+ extras: 'k_bias', 'norm1', 'cls'); q/k/v biases are separate parameters for that.
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


class SplitBiasBlock(Block):
  """`Block` with the fused qkv weight bias-free and q/k/v biases as their own parameters."""

  def __init__(self, d: int, heads: int, mlp: int, drop_path: float = 0.0):
    super().__init__(d, heads, mlp)
    self.qkv = nn.Linear(d, 3 * d, bias=False)
    self.q_bias, self.k_bias, self.v_bias = (nn.Parameter(torch.zeros(d)) for _ in range(3))
    self.drop_path = DropPath(drop_path)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (block output, CLS query [B, D])."""
    b, t, d = x.shape
    bias = torch.cat([self.q_bias, self.k_bias, self.v_bias])
    qkv = F.linear(self.norm1(x), self.qkv.weight, bias)
    q, k, v = qkv.reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
    x = x + self.drop_path(self.proj(y))
    x = x + self.drop_path(self.fc2(F.gelu(self.fc1(self.norm2(x)))))
    return x, qkv[:, 0, :d]


def proxy_anchor_loss(z: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, *,
                      alpha: float, delta_pos: float, delta_neg: float, scale: float
                      ) -> torch.Tensor:
  s = scale * (F.normalize(z, dim=-1, eps=1e-12) @ F.normalize(proxies, dim=-1, eps=1e-12).T)
  pos = F.one_hot(labels, proxies.shape[0]).bool()

  def log1p_sum_exp(a, m):  # log(1 + Σ_b m·exp(a)) per proxy
    a = torch.where(m, a, torch.full_like(a, -math.inf))
    return torch.logsumexp(torch.cat([torch.zeros_like(a[:1]), a]), dim=0)

  return (log1p_sum_exp(-alpha * (s - delta_pos), pos).mean() +
          log1p_sum_exp(alpha * (s - delta_neg), ~pos).mean())


class DAVPTViT(nn.Module):
  EXTRAS = {'k_bias': ('.k_bias',), 'norm1': ('.norm1.weight', '.norm1.bias'),
            'cls': ('cls_token',)}

  def __init__(self, class_map: Any, image=224, patch=16, d=768, depth=12, heads=12, mlp=3072,
               classes=100, num_proxies=10, num_other=5, proxy_start=11, proxy_end=11,
               pool='norm_mean', drop_path=0.0, lambda_patch=0.01, lambda_cls=0.01, alpha=32.0,
               delta_pos=0.1, delta_neg=-0.1, scale=5.0, extra_trainable: Sequence[str] = ()):
    super().__init__()
    if not 0 <= proxy_start <= proxy_end < depth:
      raise ValueError(f'proxy layers [{proxy_start}, {proxy_end}] outside depth {depth}')
    if pool not in ('cls', 'norm_mean'):
      raise ValueError(f'pool {pool!r}')
    self.pool, self.proxy_start, self.proxy_end = pool, proxy_start, proxy_end
    self.num_proxies, self.num_other = num_proxies, num_other
    self.lambdas = (lambda_patch, lambda_cls)
    self.loss_kw = dict(alpha=alpha, delta_pos=delta_pos, delta_neg=delta_neg, scale=scale)
    n = (image // patch) ** 2
    self.patch_embed = nn.Conv2d(3, d, patch, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
    self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
    self.blocks = nn.ModuleList([SplitBiasBlock(d, heads, mlp, drop_path * i / max(depth - 1, 1))
                                 for i in range(depth)])
    self.norm = nn.LayerNorm(d, eps=1e-6)
    self.head = nn.Linear(d, classes)
    n_proxy = proxy_end - proxy_start + 1
    xavier = lambda l, m: nn.Parameter(
        torch.empty(l, m, d).uniform_(-1, 1) * math.sqrt(6.0 / (m * d + l * d)))
    self.proxy = xavier(n_proxy, num_proxies)
    self.other = xavier(depth - n_proxy, num_other) if num_other > 0 and depth > n_proxy else None
    self.register_buffer('class_map', torch.as_tensor(np.array(class_map), dtype=torch.long))
    self.register_buffer('sums', torch.zeros(classes, d))
    self.register_buffer('counts', torch.zeros(classes))
    train = ('proxy', 'other', 'head.', '.v_bias', '.proj.bias', '.fc2.bias', '.norm2.bias',
             'patch_embed.bias')
    for e in extra_trainable:
      train += self.EXTRAS[e]
    for name, p in self.named_parameters():
      p.requires_grad = name.startswith(train[:3]) or name.endswith(train[3:]) or name in train

  def is_proxy(self, i: int) -> bool:
    return self.proxy_start <= i <= self.proxy_end

  def _prompts(self, i: int) -> torch.Tensor | None:
    if self.is_proxy(i):
      return self.proxy[i - self.proxy_start]
    if self.other is None:
      return None
    return self.other[i if i < self.proxy_start else i - (self.proxy_end + 1 - self.proxy_start)]

  def forward(self, images: torch.Tensor):
    """-> (logits, pooled feature, [(proxies, patch anchor, CLS anchor) per proxy layer])."""
    x = self.patch_embed(images).flatten(2).transpose(1, 2)
    b = x.shape[0]
    x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1) + self.pos_embed
    prev, taps = 0, []
    for i, blk in enumerate(self.blocks):
      p = self._prompts(i)
      parts = [x[:, :1]] + ([] if p is None else [p.expand(b, -1, -1)]) + [x[:, 1 + prev:]]
      x_in = torch.cat(parts, 1)
      prev = 0 if p is None else p.shape[0]
      x, q_cls = blk(x_in)
      if self.is_proxy(i):
        taps.append((self.proxy[i - self.proxy_start], x_in[:, 1 + prev:].mean(1), q_cls))
    normed = self.norm(x)
    pooled = normed[:, 0] if self.pool == 'cls' else normed[:, 1:].mean(1)
    return self.head(pooled), pooled, taps

  def loss(self, images: torch.Tensor, labels: torch.Tensor):
    logits, pooled, taps = self(images)
    m = self.class_map[labels]
    l_patch = sum(proxy_anchor_loss(za, prox, m, **self.loss_kw)
                  for prox, za, _ in taps) / len(taps)
    l_cls = sum(proxy_anchor_loss(zc, prox, m, **self.loss_kw) for prox, _, zc in taps) / len(taps)
    total = F.cross_entropy(logits, labels) + self.lambdas[0] * l_patch + self.lambdas[1] * l_cls
    with torch.no_grad():  # per-class feature statistics for the between-epoch remap
      w = F.one_hot(labels, self.sums.shape[0]).float()
      self.sums += w.T @ pooled.detach()
      self.counts += w.sum(0)
    return total, logits, (l_patch, l_cls)

  def load_jax(self, params: Any) -> None:
    """Copies a prompt_jax DA-VPT param tree (backbone, head, prompt/{proxy, other}) (strict)."""
    sd = state_dict_from_jax(self, params)
    for k in ('proxy', 'other'):
      if k in params['prompt']:
        sd[k] = torch.as_tensor(np.array(params['prompt'][k], np.float32))
    own = self.state_dict()
    for k in ('class_map', 'sums', 'counts'):
      sd[k] = own[k]
    self.load_state_dict(sd, strict=True)


def train_step(model: DAVPTViT, images: torch.Tensor, labels: torch.Tensor, lr: float = 1e-3,
               wd: float = 1e-4, clip_value: float = 10.0):
  """AdamW; wd on prompts / head kernel / cls, none on 1-D params; grad value clip (the recipe)."""
  named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
  decay = [p for n, p in named if p.ndim > 1 or n == 'cls_token']
  rest = [p for n, p in named if not (p.ndim > 1 or n == 'cls_token')]
  opt = torch.optim.AdamW([{'params': decay, 'weight_decay': wd},
                           {'params': rest, 'weight_decay': 0.0}], lr=lr, eps=1e-8)
  params = [p for _, p in named]

  def run():
    opt.zero_grad(set_to_none=True)
    loss, _, _ = model.loss(images, labels)
    loss.backward()
    if clip_value > 0:
      torch.nn.utils.clip_grad_value_(params, clip_value)
    opt.step()

  return run
