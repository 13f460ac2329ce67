"""Flax ViT whose parameter tree is exactly the original `ViT-B_16.npz` (pre-Linen names).

Tree (ViT-B/16): embedding/{kernel [16,16,3,768] HWIO, bias}, cls [1,1,768],
Transformer/posembed_input/pos_embedding [1,197,768],
Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value,out},
LayerNorm_2, MlpBlock_3/{Dense_0, Dense_1}}, Transformer/encoder_norm, head/{kernel, bias},
plus `prompt/...` when a prompter is attached. Flattened with '/' these are the .npz keys.

Prompt methods plug in through a `Prompter` (see `prompt_jax/models/prompter.py`): before each block
it edits the token sequence, it picks that block's attention variant/mask, and after each block it
may
record (sow) what its loss needs.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_jax.models import attention as attn_lib
from prompt_jax.models.prompter import Prompter

Array = Any

VARIANTS = {  # width, depth, mlp_dim, heads
    'Mu': (64, 4, 128, 4),  # micro: offline demo and tests
    'Ti': (192, 12, 768, 3),
    'S': (384, 12, 1536, 6),
    'B': (768, 12, 3072, 12),
    'L': (1024, 24, 4096, 16),
    'H': (1280, 32, 5120, 16),
}


def decode_variant(variant: str) -> dict[str, int]:
  """'B/16' -> dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)."""
  name, _, patch = variant.partition('/')
  if name not in VARIANTS or not patch.isdigit():
    raise ValueError(f'unknown ViT variant {variant!r}; expected e.g. B/16, one of '
                     f'{list(VARIANTS)} '
                     'with a patch size')
  width, depth, mlp_dim, heads = VARIANTS[name]
  return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=int(patch))


def gelu(approximate: bool) -> Callable[[Array], Array]:
  return lambda x: jax.nn.gelu(x, approximate=approximate)


def quick_gelu(x: Array) -> Array:
  """CLIP's x·σ(1.702x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def activation(name: str) -> Callable[[Array], Array]:
  """'gelu' (exact erf, the PyTorch seeds), 'gelu_tanh' (Flax default), 'quick_gelu' (CLIP)."""
  table = {'gelu': gelu(False), 'gelu_tanh': gelu(True), 'quick_gelu': quick_gelu}
  if name not in table:
    raise ValueError(f'unknown activation {name!r}; known: {sorted(table)}')
  return table[name]


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example (rng stream 'dropout')."""

  rate: float

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class MlpBlock(nn.Module):
  mlp_dim: int
  act: str = 'gelu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, name='Dense_0')(x)
    x = activation(self.act)(x)
    return nn.Dense(d, dtype=self.dtype, name='Dense_1')(x)


class MultiHeadAttention(nn.Module):
  """q/k/v kernels [D, H, Dh], out kernel [H, Dh, D]: the original checkpoint layout."""

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, spec: attn_lib.AttentionSpec, mask: Array | None
               ) -> tuple[Array, dict[str, Array]]:
    """x: [B, T, D] -> ([B, T, D], info)."""
    d = x.shape[-1]
    head_dim = d // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype, name=name)
    q, k, v = dense('query')(x), dense('key')(x), dense('value')(x)
    if spec.kind == 'joint':
      y, scores = attn_lib.joint_attention(q, k, v, mask)
      cls_scores = scores[:, :, 0]
    elif spec.kind == 'decoupled':
      n = spec.num_image_tokens
      prompt_in = x[:, n:].reshape(x.shape[0], -1, self.num_heads, head_dim)
      y, scores = attn_lib.decoupled_attention(q, k, v, prompt_in, spec)
      cls_scores = scores[:, :, 0]
    else:
      raise ValueError(f'unknown attention kind {spec.kind!r}')
    out = nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, name='out')(y)
    return out, {'q': q, 'cls_scores': cls_scores}


class Encoder1DBlock(nn.Module):
  """Pre-LN block: x + MHA(LN(x)); x + MLP(LN(x))."""

  mlp_dim: int
  num_heads: int
  drop_path: float = 0.0
  act: str = 'gelu'
  ln_eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, spec: attn_lib.AttentionSpec = attn_lib.JOINT,
               mask: Array | None = None, deterministic: bool = True
               ) -> tuple[Array, dict[str, Array]]:
    """x: [B, T, D] -> ([B, T, D], info {'q': [B,T,H,Dh], 'cls_scores': [B,H,T],
    'attn_out': [B,T,D]})."""
    y = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='LayerNorm_0')(x)
    y, info = MultiHeadAttention(self.num_heads, dtype=self.dtype,
                                 name='MultiHeadDotProductAttention_1')(y, spec, mask)
    if spec.drop_prompts:  # only the image tokens go on (see AttentionSpec.drop_prompts)
      x, y = x[:, :spec.num_image_tokens], y[:, :spec.num_image_tokens]
    info['attn_out'] = y
    x = x + DropPath(self.drop_path)(y, deterministic)
    y = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='LayerNorm_2')(x)
    y = MlpBlock(self.mlp_dim, act=self.act, dtype=self.dtype, name='MlpBlock_3')(y)
    return x + DropPath(self.drop_path)(y, deterministic), info


class Encoder(nn.Module):
  """posembed_input, encoderblock_{i}, encoder_norm; the prompter edits tokens between blocks."""

  depth: int
  mlp_dim: int
  num_heads: int
  prompter: Prompter | None = None
  drop_path: float = 0.0
  act: str = 'gelu'
  ln_eps: float = 1e-6
  ln_pre: bool = False
  pool: str = 'cls'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    """x: [B, 1+N, D] (CLS + patches) -> dict(encoded=[B,T,D] pre-norm, normed=[B,T,D],
    pooled=[B,D], blocks=(block outputs [B,T_i,D]...))."""
    x = AddPositionEmbs(name='posembed_input')(x)
    prompter = self.prompter
    info = None
    blocks = []
    for i in range(self.depth):
      if prompter is not None:
        x = prompter.insert(i, x, info, train)
      if i == 0 and self.ln_pre:
        x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='ln_pre')(x)
      spec, mask = (prompter.attention(i, x.shape[1], train) if prompter is not None
                    else (attn_lib.JOINT, None))
      rate = self.drop_path * i / max(self.depth - 1, 1)
      x_in = x
      x, info = Encoder1DBlock(self.mlp_dim, self.num_heads, drop_path=rate, act=self.act,
                               ln_eps=self.ln_eps, dtype=self.dtype,
                               name=f'encoderblock_{i}')(x, spec, mask, not train)
      if prompter is not None:
        prompter.observe(i, x_in, x, info, train)
      blocks.append(x)
    norm = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='encoder_norm')
    normed = norm(x)
    if self.pool == 'cls':
      pooled = normed[:, 0]
    elif self.pool == 'norm_mean':
      pooled = normed[:, 1:].mean(axis=1)
    elif self.pool == 'mean_norm':
      pooled = norm(x[:, 1:].mean(axis=1))
    else:
      raise ValueError(f'unknown pool {self.pool!r}; known: cls, norm_mean, mean_norm')
    return {'encoded': x, 'normed': normed, 'pooled': pooled, 'blocks': tuple(blocks)}


class AddPositionEmbs(nn.Module):
  """Learned position embedding `pos_embedding` [1, T, D]."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    pe = self.param('pos_embedding', nn.initializers.normal(0.02), (1,) + x.shape[1:])
    return x + pe.astype(x.dtype)


def _head_init(kind: str, std: float) -> Callable:
  if kind == 'zeros':
    return nn.initializers.zeros
  if kind == 'normal':  # timm's trunc_normal_(std=.02): its ±2 cut-offs are absolute (~100σ)
    return nn.initializers.normal(std)
  if kind == 'trunc_normal':  # cut at ±2·std (std of the result 0.88·std)
    return nn.initializers.truncated_normal(std)
  if kind == 'kaiming_fan_out':  # VPT: kaiming-normal with fan_out of the PyTorch [C, D] weight
    return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
  raise ValueError(f'unknown head_init {kind!r}; known: zeros, normal, trunc_normal, '
                   'kaiming_fan_out')


class VisionTransformer(nn.Module):
  """ViT with optional prompter and classifier head.

  pool: 'cls' (CLS after encoder_norm), 'norm_mean' (encoder_norm then mean of tokens[1:], prompts
  included: DA-VPT's MAE head) or 'mean_norm' (mean of tokens[1:] then encoder_norm: SPT/timm MAE).
  num_classes=0 gives no head (features only).
  """

  patch_size: int = 16
  width: int = 768
  depth: int = 12
  mlp_dim: int = 3072
  num_heads: int = 12
  num_classes: int = 0
  prompt: Prompter | None = None  # parameters under the top-level 'prompt' subtree
  drop_path: float = 0.0
  act: str = 'gelu'
  ln_eps: float = 1e-6
  pool: str = 'cls'
  head_init: str = 'zeros'
  head_init_std: float = 0.02
  head_bias_init: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
    """images: [B, H, W, 3] normalised -> (logits [B, C] or features [B, D], aux dict)."""
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                name='embedding')(images)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    out = {'patch_embed': x}
    cls = self.param('cls', nn.initializers.zeros, (1, 1, d))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    enc = Encoder(self.depth, self.mlp_dim, self.num_heads, prompter=self.prompt,
                  drop_path=self.drop_path, act=self.act, ln_eps=self.ln_eps, pool=self.pool,
                  dtype=self.dtype, name='Transformer')(x, train)
    out.update(enc)
    feat = out['pre_logits'] = enc['pooled']
    if not self.num_classes:
      return feat, out
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                      kernel_init=_head_init(self.head_init, self.head_init_std),
                      bias_init=nn.initializers.constant(self.head_bias_init))(feat)
    return logits, out
