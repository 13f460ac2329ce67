"""The backbone's architecture, decoded from `config.model.variant` in this one place.

  arch = arch.decode('B/16', 'vit')     # Arch(family='vit', width=768, depth=12, ...)

A run decodes it once (`Method.arch`, prompt_jax/methods/base.py) and hands the record to the
method's builders (`build_prompter(config, arch, prepared)`, ...), which read fields, never the
variant string.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prompt_jax.models import clip, vit

FAMILIES = ('vit', 'clip')


@dataclasses.dataclass(frozen=True)
class Arch:
  """The image tower's sizes (for CLIP: its vision tower) and the family's constructor kwargs."""

  family: str        # 'vit' (models/vit.py) | 'clip' (models/clip.py)
  width: int         # token width D
  depth: int         # blocks L
  num_heads: int
  mlp_dim: int
  patch_size: int
  kwargs: tuple[tuple[str, int], ...] = ()  # the family's model constructor kwargs, as pairs

  def constructor_kwargs(self) -> dict[str, Any]:
    """vit.VisionTransformer(width=..., depth=..., ...) or clip.CLIP(embed_dim=..., ...) kwargs."""
    return dict(self.kwargs)


def decode(variant: str, family: str = 'vit') -> Arch:
  """'B/16' -> its Arch in `family`; ValueError naming the known variants for an unknown one."""
  if family == 'vit':
    k = vit.decode_variant(variant)
    return Arch('vit', k['width'], k['depth'], k['num_heads'], k['mlp_dim'], k['patch_size'],
                tuple(k.items()))
  if family == 'clip':
    k = clip.clip_kwargs(variant)
    return Arch('clip', k['vision_width'], k['vision_layers'], k['vision_heads'],
                4 * k['vision_width'], k['patch_size'], tuple(k.items()))
  raise ValueError(f'unknown model family {family!r}; known: {list(FAMILIES)}')
