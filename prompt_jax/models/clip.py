"""CLIP image and text towers in Flax (OpenAI layout, QuickGELU, LayerNorm eps 1e-5).

Param tree (ViT-B/16):
  visual/{conv1/kernel [16,16,3,768] HWIO (no bias), class_embedding [768],
          positional_embedding [197,768], ln_pre, resblocks_{i}/{LayerNorm_0,
          MultiHeadDotProductAttention_1/{query,key,value,out}, LayerNorm_2,
          MlpBlock_3/Dense_{0,1}},
          ln_post, proj [768,512]}
  text/{token_embedding/embedding [49408,512], positional_embedding [77,512],
        resblocks_{i}/..., ln_final, text_projection [512,512]}
  logit_scale []
Blocks are `vit.Encoder1DBlock` (q/k/v kernels [D,H,Dh]); loaders in prompt_jax/checkpoints/clip.py.

Prompts plug in through `Prompter.insert(i, BlockOutput(x), train)`, whose result here is the
whole token array [B, T, D] (or Tokens with live tokens only): every token is live in every block
(the full path; the text tower's causal mask and IVLP's replaced prompts are not split into live /
key-value-only tokens). Vision: insert(0) runs after the position embedding and before ln_pre,
insert(i ≥ 1) before block i. Text: insert(0) runs on the token embeddings BEFORE the position
embedding (CoOp / IVLP), insert(i ≥ 1) before block i. Every tower call takes `use_prompts` so the
same parameters also give the frozen zero-shot features.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from prompt_jax.models import vit
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any

TEXT = dict(context_length=77, vocab_size=49408, text_width=512, text_layers=12, text_heads=8)
TEXT_L14 = dict(TEXT, text_width=768, text_heads=12)


def _variant(embed_dim: int, image_size: int, patch_size: int, vision_width: int,
             vision_layers: int, vision_heads: int, text: dict[str, int] = TEXT) -> dict[str, int]:
  return dict(embed_dim=embed_dim, image_size=image_size, patch_size=patch_size,
              vision_width=vision_width, vision_layers=vision_layers, vision_heads=vision_heads,
              **text)


# `config.model.variant` -> CLIP constructor kwargs (OpenAI's releases).
VARIANTS: dict[str, dict[str, int]] = {
    'B/32': _variant(512, 224, 32, 768, 12, 12),
    'B/16': _variant(512, 224, 16, 768, 12, 12),
    'L/14': _variant(768, 224, 14, 1024, 24, 16, TEXT_L14),
}


def clip_kwargs(variant: str) -> dict[str, int]:
  """'B/16' -> the CLIP constructor kwargs of OpenAI's ViT-B/16 release."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown CLIP variant {variant!r}; known: {sorted(VARIANTS)}')
  return dict(VARIANTS[variant])


def causal_mask(t: int) -> np.ndarray:
  """bool [T, T], True where query i may attend key j (j <= i)."""
  return np.tril(np.ones((t, t), bool))


def trim_to_eot(ids: np.ndarray, min_len: int = 1) -> np.ndarray:
  """ids[:, :max EOT position + 1] (host numpy). Exact for CLIP's text feature: with the causal mask
  nothing after a row's EOT reaches its EOT token, and position embeddings are sliced to the length.
  Descriptions are ~20-30 tokens of 77, so this cuts the text tower's cost about 3x."""
  ids = np.asarray(ids)
  return ids[:, :max(int(ids.argmax(-1).max()) + 1, min_len)]


def _insert(prompter: Prompter, layer: int, x: Array, train: bool) -> Array:
  """The prompter's tokens for block `layer`, every one live (the CLIP towers' full path)."""
  tokens = prompter.insert(layer, BlockOutput(x), train)
  if not isinstance(tokens, Tokens):
    return tokens
  if tokens.kv is not None or tokens.fixed is not None or tokens.kernel is not None:
    raise ValueError('the CLIP towers compute every token live with joint attention: return '
                     'Tokens(live) only')
  return tokens.live


def _block(width: int, heads: int, act: str, eps: float, dtype: Any, name: str):
  return vit.Encoder1DBlock(4 * width, heads, act=act, ln_eps=eps, dtype=dtype, name=name)


class VisionTower(nn.Module):
  """CLIP ViT: conv1 -> [CLS, patches] + pos -> (prompts) -> ln_pre -> blocks -> ln_post -> proj."""

  width: int
  layers: int
  heads: int
  patch_size: int
  image_size: int
  output_dim: int
  act: str = 'quick_gelu'
  ln_eps: float = 1e-5
  prompter: Prompter | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array, train: bool = False, use_prompts: bool = True
               ) -> dict[str, Array]:
    """images [B,H,W,3] -> dict(tokens [B,T,E] = ln_post(x)@proj for every token, pooled [B,E]
    (tokens[:,0]), encoded [B,T,D] pre-ln_post, blocks (each block output [B,T,D]))."""
    p, d = self.patch_size, self.width
    x = nn.Conv(d, (p, p), strides=(p, p), padding='VALID', use_bias=False, dtype=self.dtype,
                name='conv1')(images)
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, d)
    scale = d ** -0.5
    cls = self.param('class_embedding', nn.initializers.normal(scale), (d,))
    n = (self.image_size // p) ** 2 + 1
    pos = self.param('positional_embedding', nn.initializers.normal(scale), (n, d))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    x = x + pos.astype(x.dtype)
    # Own loop, not vit.Encoder: CLIP's ln_pre sits between block 0's prompt insertion and block 0,
    # and every token is live (IVLP); the prompts still come through the Prompter seam.
    prompter = self.prompter if use_prompts else None
    if prompter is not None:
      x = _insert(prompter, 0, x, train)
    x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='ln_pre')(x)
    blocks = []
    for i in range(self.layers):
      if prompter is not None and i > 0:
        x = _insert(prompter, i, x, train)
      x = _block(d, self.heads, self.act, self.ln_eps, self.dtype,
                 f'resblocks_{i}')(x, deterministic=not train).x
      blocks.append(x)
    normed = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='ln_post')(x)
    proj = self.param('proj', nn.initializers.normal(scale), (d, self.output_dim))
    tokens = normed @ proj.astype(normed.dtype)
    return {'encoded': x, 'normed': normed, 'tokens': tokens, 'pooled': tokens[:, 0],
            'blocks': tuple(blocks)}


class TextTower(nn.Module):
  """CLIP text transformer with a causal mask; the feature is ln_final(x) at the EOT (argmax id)."""

  width: int
  layers: int
  heads: int
  vocab_size: int
  context_length: int
  output_dim: int
  act: str = 'quick_gelu'
  ln_eps: float = 1e-5
  prompter: Prompter | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids: Array, train: bool = False, use_prompts: bool = True) -> Array:
    """ids int [N, T<=context_length] -> features [N, E] (not normalised)."""
    t = ids.shape[1]
    x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                 dtype=self.dtype, name='token_embedding')(ids)
    # Own loop, not vit.Encoder: CLIP's ln_pre sits between block 0's prompt insertion and block 0,
    # and every token is live (IVLP); the prompts still come through the Prompter seam.
    prompter = self.prompter if use_prompts else None
    if prompter is not None:
      x = _insert(prompter, 0, x, train)
    pos = self.param('positional_embedding', nn.initializers.normal(0.01),
                     (self.context_length, self.width))
    x = x + pos[:t].astype(x.dtype)
    mask = causal_mask(t)
    for i in range(self.layers):
      if prompter is not None and i > 0:
        x = _insert(prompter, i, x, train)
      x = _block(self.width, self.heads, self.act, self.ln_eps, self.dtype,
                 f'resblocks_{i}')(x, mask=mask, deterministic=not train).x
    x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name='ln_final')(x)
    eot = jnp.argmax(ids, axis=-1)
    pooled = x[jnp.arange(x.shape[0]), eot]
    proj = self.param('text_projection', nn.initializers.normal(self.width ** -0.5),
                      (self.width, self.output_dim))
    return pooled @ proj.astype(pooled.dtype)


def l2_normalize(x: Array, axis: int = -1) -> Array:
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


class CLIP(nn.Module):
  """Both towers and logit_scale. `__call__(images)` is the image tower (the backbone contract:
  (features [B,E], out)); `encode_text(ids)` is the text tower; `logits(images, ids)` is CLIP's
  logits_per_image. Prompters (optional) are attached as `visual_prompt` / `text_prompt`."""

  embed_dim: int = 512
  image_size: int = 224
  patch_size: int = 16
  vision_width: int = 768
  vision_layers: int = 12
  vision_heads: int = 12
  context_length: int = 77
  vocab_size: int = 49408
  text_width: int = 512
  text_layers: int = 12
  text_heads: int = 8
  act: str = 'quick_gelu'
  ln_eps: float = 1e-5
  visual_prompt: Prompter | None = None
  text_prompt: Prompter | None = None
  dtype: Any = jnp.float32

  def setup(self):
    self.visual = VisionTower(self.vision_width, self.vision_layers, self.vision_heads,
                              self.patch_size, self.image_size, self.embed_dim, act=self.act,
                              ln_eps=self.ln_eps, prompter=self.visual_prompt, dtype=self.dtype)
    self.text = TextTower(self.text_width, self.text_layers, self.text_heads, self.vocab_size,
                          self.context_length, self.embed_dim, act=self.act, ln_eps=self.ln_eps,
                          prompter=self.text_prompt, dtype=self.dtype)
    self.logit_scale = self.param('logit_scale', nn.initializers.constant(np.log(1 / 0.07)), ())

  def encode_image(self, images: Array, train: bool = False, use_prompts: bool = True
                   ) -> dict[str, Array]:
    return self.visual(images, train, use_prompts)

  def encode_text(self, ids: Array, train: bool = False, use_prompts: bool = True) -> Array:
    return self.text(ids, train, use_prompts)

  def logits(self, images: Array, ids: Array) -> Array:
    """logits_per_image [B, N] = exp(logit_scale)·normalised image · normalised text features."""
    img = l2_normalize(self.encode_image(images)['pooled'])
    txt = l2_normalize(self.encode_text(ids))
    return jnp.exp(self.logit_scale) * img @ txt.T

  def __call__(self, images: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
    """images [B,H,W,3] (CLIP-normalised) -> (image features [B,E] unnormalised, out dict)."""
    out = self.encode_image(images, train)
    if self.is_initializing():  # create the text tower's params too
      self.encode_text(jnp.zeros((1, self.context_length), jnp.int32))
    return out['pooled'], out
