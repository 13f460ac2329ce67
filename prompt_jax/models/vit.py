"""Flax ViT whose parameter tree is exactly the original `ViT-B_16.npz` (pre-Linen names).

Tree (ViT-B/16): embedding/{kernel [16,16,3,768] HWIO, bias}, cls [1,1,768],
Transformer/posembed_input/pos_embedding [1,197,768],
Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value,out},
LayerNorm_2, MlpBlock_3/{Dense_0, Dense_1}}, Transformer/encoder_norm, head/{kernel, bias},
plus `prompt/...` when a prompter is attached. Flattened with '/' these are the .npz keys.

Prompt methods plug in through a `Prompter` (`prompt_jax/models/prompter.py`): before each block it
lays out that block's tokens (`Tokens`: live tokens, key/value-only tokens, an optional attention
kernel and mask, intermediates to sow). Blocks know transformers, not methods.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_jax.models import attention as attn_lib
from prompt_jax.models import deltas as deltas_lib
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Kernel
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

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
  attention: str = 'auto'
  dtype: Any = jnp.float32
  remat: bool = False  # recompute the attention weights in the backward pass (model.remat)

  @nn.compact
  def __call__(self, y: Array, y_kv: Array | None = None, y_fixed: Array | None = None, *,
               num_queries: int | None = None, kernel: Kernel | None = None,
               mask: Array | None = None, qkv_delta: deltas_lib.QKVDelta | None = None
               ) -> tuple[Array, Array | None, Array, Any]:
    """y: [B, T, D] normed live tokens; y_kv: [B, S, D] or [S, D] normed key/value-only tokens;
    y_fixed: [C, D] normed fixed tokens (see `prompter.Tokens`); qkv_delta: `Deltas.qkv`.

    Returns (out [B, T, D], out_fixed [C, D] or None, queries [B, Tq, H, Dh], the kernel's carry).
    """
    b, t, d = y.shape
    head_dim = d // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype, name=name)
    query, key, value = dense('query'), dense('key'), dense('value')
    out_proj = nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, name='out')
    nq = t if num_queries is None else num_queries
    if kernel is None and (nq != t or y_fixed is not None):
      raise ValueError('live tokens that issue no query (Tokens.num_queries, Tokens.fixed) get '
                       "their attention output from the prompter's kernel (Tokens.kernel)")
    q = query(y if nq == t else y[:, :nq])
    batched = [y] + ([y_kv] if y_kv is not None and y_kv.ndim == 3 else [])
    y_all = batched[0] if len(batched) == 1 else jnp.concatenate(batched, axis=1)
    k, v = key(y_all), value(y_all)
    if qkv_delta is not None:  # a method's change of the projections (models/deltas.py)
      dq, dk, dv = qkv_delta(y_all)
      q = deltas_lib.add(q, None if dq is None else dq[:, :nq])
      k, v = deltas_lib.add(k, dk), deltas_lib.add(v, dv)
    shared = [a for a in (y_fixed, y_kv) if a is not None and a.ndim == 2]
    if shared:  # the same for every example: projected once
      y_shared = shared[0] if len(shared) == 1 else jnp.concatenate(shared, axis=0)
      bcast = lambda a: jnp.broadcast_to(a[None], (b,) + a.shape)
      k_s, v_s = key(y_shared), value(y_shared)
      if qkv_delta is not None:
        _, dk, dv = qkv_delta(y_shared)
        k_s, v_s = deltas_lib.add(k_s, dk), deltas_lib.add(v_s, dv)
      k_s, v_s = bcast(k_s), bcast(v_s)
      if y_fixed is not None and y_kv is not None and y_kv.ndim == 3:  # order: live, fixed, kv
        k = jnp.concatenate([k[:, :t], k_s, k[:, t:]], axis=1)
        v = jnp.concatenate([v[:, :t], v_s, v[:, t:]], axis=1)
      else:
        k, v = jnp.concatenate([k, k_s], axis=1), jnp.concatenate([v, v_s], axis=1)
    impl = attn_lib.resolve(self.attention)
    if kernel is None:
      attend = lambda q, k, v, mask: attn_lib.dot_product_attention(q, k, v, mask, impl)
      attend = jax.checkpoint(attend) if self.remat else attend
      o, o_fixed, carry = attend(q, k, v, mask), None, None
    else:
      run = lambda q, k, v, y, y_fixed: kernel(q, k, v, y=y, y_fixed=y_fixed, impl=impl)
      run = jax.checkpoint(run) if self.remat else run
      o, o_fixed, carry = run(q, k, v, y, y_fixed)
    return out_proj(o), None if o_fixed is None else out_proj(o_fixed), q, carry


SOWABLE = ('queries', 'attn_out')


class Encoder1DBlock(nn.Module):
  """Pre-LN block: x + MHA(LN(x)); x + MLP(LN(x)), on the live tokens only (see `Tokens`)."""

  mlp_dim: int
  num_heads: int
  drop_path: float = 0.0
  act: str = 'gelu'
  ln_eps: float = 1e-6
  attention: str = 'auto'
  dtype: Any = jnp.float32
  remat: bool = False  # model.remat: see VisionTransformer

  @nn.compact
  def __call__(self, x: Array, kv: Array | None = None, fixed: Array | None = None, *,
               num_queries: int | None = None, kernel: Kernel | None = None,
               mask: Array | None = None, sow: tuple[str, ...] = (),
               deltas: deltas_lib.Deltas | None = None,
               deterministic: bool = True) -> BlockOutput:
    """x: [B, T, D] live tokens, kv: [B, S, D] / [S, D] key/value-only tokens, fixed: [C, D] fixed
    tokens -> BlockOutput(x [B, T, D], fixed [C, D], the kernel's carry). `sow` names
    intermediates recorded in 'aux' (SOWABLE); `deltas` a method's projection deltas and
    residual branches (models/deltas.py)."""
    d = deltas or deltas_lib.Deltas()
    unknown = set(sow) - set(SOWABLE)
    if unknown:
      raise ValueError(f'blocks cannot sow {sorted(unknown)}; known: {SOWABLE}')
    if fixed is not None and not deterministic and self.drop_path > 0:
      raise ValueError('fixed tokens (Tokens.fixed) are the same for every example, which a '
                       'per-example drop path breaks: pass them batched in Tokens.live')
    ln = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='LayerNorm_0')
    norm = lambda a: None if a is None else ln(a)
    mha = MultiHeadAttention(self.num_heads, attention=self.attention, dtype=self.dtype,
                             remat=self.remat, name='MultiHeadDotProductAttention_1')
    y, y_fixed, q, carry = mha(ln(x), norm(kv), norm(fixed), num_queries=num_queries,
                               kernel=kernel, mask=mask, qkv_delta=d.qkv)
    if 'queries' in sow:
      self.sow('aux', 'queries', q)
    if 'attn_out' in sow:
      self.sow('aux', 'attn_out', y)
    ln2 = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='LayerNorm_2')
    mlp_cls = nn.remat(MlpBlock) if self.remat else MlpBlock  # same params, hidden recomputed
    mlp = mlp_cls(self.mlp_dim, act=self.act, dtype=self.dtype, name='MlpBlock_3')
    x = x + deltas_lib.branch(d.attn, DropPath(self.drop_path)(y, deterministic))
    x = x + deltas_lib.branch(d.mlp, DropPath(self.drop_path)(mlp(ln2(x)), deterministic))
    if fixed is not None:
      fixed = fixed + deltas_lib.branch(d.attn, y_fixed)
      fixed = fixed + deltas_lib.branch(d.mlp, mlp(ln2(fixed)))
    return BlockOutput(x, fixed, carry)


def sown(aux: dict[str, Any], layer: int, name: str) -> Array:
  """What block `layer` sowed as `name` (Tokens.sow) in this forward pass."""
  try:
    return aux['Transformer'][f'encoderblock_{layer}'][name][0]
  except KeyError:
    raise KeyError(f'block {layer} sowed no {name!r} (ask for it with Tokens.sow, and apply the '
                   "model with mutable=['aux'])") from None


class Encoder(nn.Module):
  """posembed_input, encoderblock_{i}, encoder_norm; the prompter lays out each block's tokens."""

  depth: int
  mlp_dim: int
  num_heads: int
  prompter: Prompter | None = None
  drop_path: float = 0.0
  act: str = 'gelu'
  ln_eps: float = 1e-6
  pool: str = 'cls'
  attention: str = 'auto'
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    """x: [B, 1+N, D] (CLS + patches) -> dict(encoded=[B,T,D] the last block's live tokens,
    pre-norm, normed=[B,T,D], pooled=[B,D], blocks=(each block's live output [B,T_i,D]...))."""
    if self.pool not in ('cls', 'norm_mean', 'mean_norm'):
      raise ValueError(f'unknown pool {self.pool!r}; known: cls, norm_mean, mean_norm')
    prev = BlockOutput(AddPositionEmbs(name='posembed_input')(x))
    blocks = []
    for i in range(self.depth):
      tokens = Tokens(prev.x)
      if self.prompter is not None:
        tokens = self.prompter.insert(i, prev, train, i == self.depth - 1 and self.pool != 'cls')
        if not isinstance(tokens, Tokens):  # a bare array: every token live
          tokens = Tokens(tokens)
      rate = self.drop_path * i / max(self.depth - 1, 1)
      prev = Encoder1DBlock(self.mlp_dim, self.num_heads, drop_path=rate, act=self.act,
                            ln_eps=self.ln_eps, attention=self.attention, dtype=self.dtype,
                            remat=self.remat, name=f'encoderblock_{i}')(
          tokens.live, tokens.kv, tokens.fixed, num_queries=tokens.num_queries,
          kernel=tokens.kernel, mask=tokens.mask, sow=tokens.sow, deltas=tokens.deltas,
          deterministic=not train)
      blocks.append(prev.x)
    x = prev.x
    norm = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='encoder_norm')
    normed = norm(x)
    if self.pool == 'cls':
      pooled = normed[:, 0]
    elif self.pool == 'norm_mean':
      pooled = normed[:, 1:].mean(axis=1)
    else:
      pooled = norm(x[:, 1:].mean(axis=1))
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
  remat (config model.remat, default False): in every block the MLP's hidden activations and the
  attention weights are recomputed in the backward pass instead of stored (the two largest
  per-block tensors, B·T·mlp_dim and B·H·T·T); same params and results, less memory, more FLOPs
  (`python -m benchmarks.memory`; benchmarks/results/memory_*.json).
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
  attention: str = 'auto'  # attention.IMPLEMENTATIONS
  dtype: Any = jnp.float32
  remat: bool = False

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
                  attention=self.attention, dtype=self.dtype, remat=self.remat,
                  name='Transformer')(x, train)
    out.update(enc)
    feat = out['pre_logits'] = enc['pooled']
    if not self.num_classes:
      return feat, out
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                      kernel_init=_head_init(self.head_init, self.head_init_std),
                      bias_init=nn.initializers.constant(self.head_bias_init))(feat)
    return logits, out
