"""The seam between the ViT and a prompt method.

A `Prompter` is a linen Module attached to the ViT as `prompter=`; its parameters live under the
top-level `prompt/` subtree (what the trainer trains). Create parameters in `setup()` because the
encoder calls its methods once per block. The encoder calls, for block i = 0..depth-1:

  x = prompter.insert(i, x, prev_info, train)       # edit tokens [B, T, D] (add/replace prompts)
  spec, mask = prompter.attention(i, T, train)      # static AttentionSpec + optional bool mask [T,
  T]
  x_out, info = block(x, spec, mask)
  prompter.observe(i, x_in, x_out, info, train)     # sow what the method's loss needs

`prev_info` / `info` hold the block's {'q': [B,T,H,Dh], 'cls_scores': [B,H,T] (pre-softmax scores of
the CLS query), 'attn_out': [B,T,D]}; prev_info is None before block 0. Anything sown into the
'aux' collection (`self.sow('aux', name, value)`) is returned to the method's loss.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from prompt_jax.models import attention as attn_lib

Array = Any


class Prompter(nn.Module):
  """No prompts: the plain ViT (linear probe / full fine-tuning)."""

  def insert(self, layer: int, x: Array, prev_info: dict[str, Array] | None, train: bool) -> Array:
    del layer, prev_info, train
    return x

  def attention(self, layer: int, num_tokens: int, train: bool = False
                ) -> tuple[attn_lib.AttentionSpec, Array | None]:
    del layer, num_tokens, train
    return attn_lib.JOINT, None

  def observe(self, layer: int, x_in: Array, x_out: Array, info: dict[str, Array],
              train: bool) -> None:
    del layer, x_in, x_out, info, train
