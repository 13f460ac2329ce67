"""The seam between the ViT and a prompt method: which tokens a block computes, and how it attends.

A `Prompter` is a linen Module attached to the ViT as `prompter=`; its parameters live under the
top-level `prompt/` subtree (what the trainer trains). Create parameters in `setup()` because the
encoder calls `insert` once per block. For block i = 0..depth-1 the encoder does

  tokens = prompter.insert(i, prev, train, pool_reads_prompts)   # -> Tokens
  prev = block(tokens)                                           # -> BlockOutput

prev: the previous block's `BlockOutput` (before block 0: the embedded CLS + patches with position
embeddings); pool_reads_prompts: True only before the last block when the pool reads every token
(MAE mean pooling), i.e. that block's prompt outputs are read.

Token liveness, per block: a token is LIVE when something reads its output of the block (the next
block keeps it, the pooling reads it, or a loss reads it). Otherwise it is KEY/VALUE-ONLY: it is
normed (LayerNorm_0) and projected to keys and values, but issues no query and gets no output
projection, residual or MLP. Softmax attention does not depend on the order of its keys, so the
block takes the live and the kv-only tokens as separate arrays and the result is exactly that of all
tokens live (what the releases compute). Live tokens that issue no query and are the same for every
example (SHIP's prompts inside a hierarchy, at inference) are FIXED: the block computes them once.
Anything sown into the 'aux' collection (by the prompter: `self.sow('aux', name, v)`, or by a block
asked through `Tokens.sow`) reaches the method's loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

import flax.linen as nn

from prompt_jax.models.deltas import Deltas

Array = Any

# kernel(q [B,Tq,H,Dh], k [B,S,H,Dh], v [B,S,H,Dh], *, y [B,T,D], y_fixed [C,D] | None, impl)
#   -> (o [B,T,H,Dh], o_fixed [C,H,Dh] | None, carry).
# Keys / values are those of the live tokens, then the fixed ones, then the key/value-only ones; y /
# y_fixed are the normed live / fixed tokens; impl the resolved `attention.dot_product_attention`
# implementation; carry is handed to the next block's `insert` (`BlockOutput.carry`).
Kernel = Callable[..., tuple[Array, Array | None, Any]]


@dataclasses.dataclass(frozen=True)
class Tokens:
  """One block's input as the prompter lays it out.

  live: [B, T, D] tokens whose block output is read (queries, output projection, residual, MLP).
  kv: [B, S, D] key/value-only tokens, or [S, D] when they are the same for every example (normed
    and projected once); None: no such tokens.
  fixed: [C, D] live tokens the same for every example that issue no query (computed once; their
    attention output is the kernel's, which is then required). Not with an active drop path.
  num_queries: only the first `num_queries` live tokens issue queries (None: all); the others'
    attention output comes from `kernel`, which is then required.
  kernel: the method's attention (see `Kernel`); None: `attention.dot_product_attention`.
  mask: bool [T or num_queries, T + S] for the default kernel (True = may attend); keys ordered
    live then kv.
  sow: block intermediates to record in 'aux' under the block's path
    (aux['Transformer']['encoderblock_i'][name], see `vit.sown`): 'queries' [B, Tq, H, Dh],
    'attn_out' [B, T, D] (attention after the output projection, before the residual).
  deltas: changes to the block's q/k/v projections and residual branches after attention / MLP
    (LoRA, adapters; `models/deltas.py`); None: the plain block.
  """

  live: Array
  kv: Array | None = None
  fixed: Array | None = None
  num_queries: int | None = None
  kernel: Kernel | None = None
  mask: Array | None = None
  sow: tuple[str, ...] = ()
  deltas: Deltas | None = None


@dataclasses.dataclass(frozen=True)
class BlockOutput:
  """What a block hands to the next `insert`: x [B, T, D] its live tokens' outputs, fixed [C, D]
  its fixed tokens' outputs (or None), carry what its attention kernel returned (or None)."""

  x: Array
  fixed: Array | None = None
  carry: Any = None


class Prompter(nn.Module):
  """No prompts: the plain ViT (linear probe / full fine-tuning)."""

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    del layer, train, pool_reads_prompts
    return Tokens(prev.x)
