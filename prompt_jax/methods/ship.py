"""SHIP: semantic hierarchical prompt tuning (docs/specs/02-ship.md).

Host side (`prepare`): per-layer CLS features of the frozen backbone on the training split ->
12x12 mean-cosine affinity -> greedy anchors (`greedy_anchors`); k-means prototype bank of the
last-layer CLS features of up to 1000 training images: scikit-learn
`KMeans(200, random_state=ship.seed, n_init=ship.kmeans_n_init)`. The release runs
`KMeans(200, random_state=42)` (train.py:287) with scikit-learn's default n_init, which is 10
before scikit-learn 1.4 and 1 from 1.4 on; its torch==2.3.0 pin dates it to scikit-learn >= 1.4, so
the defaults here are seed 42 and n_init 1 (`ship.kmeans_n_init=10`: a pre-1.4 run). The release
prefers its shipped files: `ship.affinity_path` (save_affinity/<task>/affinity.npy, [12, 12]) and
`ship.prototypes_path` (save_attribute/<task>/prototype_200_clusters.npy, [200, 768]) replace the
computation; their shapes are checked (`load_affinity`, `load_prototypes`).

Initialisation (the release): independent prompts torch `xavier_uniform_` on one (1, P, D) tensor
per anchor (bound sqrt(6 / ((P + 1)·D))); shared prompt uniform(±sqrt(6/D)); attribute prompts
uniform(±sqrt(6/(10·D))). The recipe around it (direct 224×224 bicubic resize, no crop; head
N(0, .02); full batches only) is in configs/ship_vtab.py.

Token layout [CLS, patches (n-1), independent (P), (attribute 10), shared (10)]; prompts get no
position embedding. Every block uses decoupled attention (0.9 image / 0.1 prompt, two softmaxes;
`decoupled_attention`, this method's attention kernel); prompts issue queries only at the last
block. Loss = CE + ship.match_weight * matching loss.

Live tokens (`model.live_tokens`, default True; exact, see `SHIPPrompter`): a prompt is only keys
and values in a block whose output of it nothing reads: the shared prompt in every block, the
independent / attribute prompts in the block before the next anchor, every prompt in the last
block at inference. `model.live_tokens=False` computes every token in every block, as the release
does; then `ship.fast_inference` (on by default; eval only) still makes the last block's prompts
key/value-only (no queries, residual or MLP; none of that reaches the CLS token, so the logits are
unchanged). Training always runs the full last block (its prompt outputs feed the matching loss).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ml_collections import ConfigDict

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import progress
from prompt_jax.util import checks
from prompt_jax.methods import base
from prompt_jax.methods import torch_names
from prompt_jax.methods import inits
from prompt_jax.models import attention as attn_lib
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any
NUM_SHARED = 10
NUM_ATTRIBUTE = 10
TOP_K = 10


# ----------------------------------------------------------------------------- host side

def affinity(features: np.ndarray) -> np.ndarray:
  """features [L, N, D] -> S [L, L] = mean over n of cos(F[l, n], F[m, n])."""
  f = np.asarray(features, np.float64)
  f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
  return np.einsum('lnd,mnd->lm', f, f) / f.shape[1]


def greedy_anchors(aff: np.ndarray, threshold: float) -> tuple[int, ...]:
  """Greedy chain: a new hierarchy starts at j when S[current anchor, j] < threshold."""
  anchors, cur = [0], 0
  for j in range(1, aff.shape[0]):
    if aff[cur, j] < threshold:
      anchors.append(j)
      cur = j
  return tuple(anchors)


def prototype_bank(features: np.ndarray, k: int, seed: int = 0, n_init: int = 1) -> np.ndarray:
  """K-means (scikit-learn, fixed seed) centres of features [N, D] -> [min(k, N), D] float32."""
  from sklearn.cluster import KMeans
  f = np.asarray(features, np.float32)
  k = min(k, len(f))
  km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(f)
  return km.cluster_centers_.astype(np.float32)


def load_affinity(path: str, depth: int) -> np.ndarray:
  """The release's `save_affinity/<task>/affinity.npy`: float [depth, depth], symmetric, unit
  diagonal, entries in [-1, 1]. Anything else is a ValueError naming the file and the problem."""
  aff = np.load(path, allow_pickle=False)
  problem = ''
  if aff.shape != (depth, depth):
    problem = f'shape {aff.shape}, expected ({depth}, {depth}) (one row per block of the ViT)'
  elif not np.isfinite(aff).all():
    problem = 'non-finite entries'
  elif np.abs(aff - aff.T).max() > 1e-4 or np.abs(np.diag(aff) - 1).max() > 1e-3:
    problem = 'not a symmetric mean-cosine matrix with unit diagonal'
  elif np.abs(aff).max() > 1 + 1e-4:
    problem = f'entries up to {np.abs(aff).max():.3g}, outside [-1, 1]'
  if problem:
    raise ValueError(f'ship.affinity_path={path!r}: {problem}. Give the release\'s '
                     "save_affinity/<task>/affinity.npy of the same task, or '' to compute it.")
  return aff.astype(np.float64)


def load_prototypes(path: str, num_prototypes: int, width: int) -> np.ndarray:
  """The release's `save_attribute/<task>/prototype_200_clusters.npy`: float [K, width] with
  K = ship.num_prototypes. Anything else is a ValueError naming the file and the problem."""
  bank = np.load(path, allow_pickle=False)
  problem = ''
  if bank.ndim != 2 or bank.shape[1] != width:
    problem = f'shape {bank.shape}, expected [K, {width}] (K prototypes of the ViT width)'
  elif bank.shape[0] != num_prototypes:
    problem = (f'{bank.shape[0]} prototypes but ship.num_prototypes={num_prototypes} (set '
               f'--config.ship.num_prototypes={bank.shape[0]} to use this file)')
  elif not np.isfinite(bank).all():
    problem = 'non-finite entries'
  if problem:
    raise ValueError(f'ship.prototypes_path={path!r}: {problem}. Give the release\'s '
                     "save_attribute/<task>/prototype_200_clusters.npy of the same task, or '' to "
                     'compute it.')
  return bank.astype(np.float32)


def prepare(ctx: base.PrepareContext) -> dict[str, Any]:
  """{'anchors': tuple, 'bank': [K, D], 'affinity': [L, L]} from the frozen backbone
  (docs/specs/02-ship.md §1, §3)."""
  s, arch = ctx.config.ship, ctx.arch
  aff = load_affinity(s.affinity_path, arch.depth) if s.affinity_path else None
  bank = (load_prototypes(s.prototypes_path, s.num_prototypes, arch.width)
          if s.prototypes_path else None)
  if aff is None or bank is None:
    feats, _ = ctx.features(ctx.config.data.train_split,
                            lambda l, o: jnp.stack([b[:, 0] for b in o['blocks']]).swapaxes(0, 1),
                            max_examples=s.max_images)
    feats = np.asarray(feats).swapaxes(0, 1)  # [L, N, D]
    if aff is None:
      aff = affinity(feats)
    if bank is None:
      with progress.bar(total=1, desc=f'SHIP k-means: {s.num_prototypes} prototypes of '
                        f'{len(feats[-1])} features, n_init={s.kmeans_n_init}', unit='fit') as b:
        bank = prototype_bank(feats[-1], s.num_prototypes, seed=s.seed, n_init=s.kmeans_n_init)
        b.update()
  anchors = greedy_anchors(aff, s.threshold)
  return {'anchors': anchors, 'bank': np.asarray(bank, np.float32), 'affinity': np.asarray(aff)}


# ----------------------------------------------------------------------------- device side

def topk_tokens(x: Array, cls_scores: Array, n: int, k: int = TOP_K) -> Array:
  """x [B, T, D], cls_scores [B, H, T'] -> the k image tokens (of x[:, :n]) with the highest
  head-averaged CLS score, [B, k, D] (CLS itself may be picked)."""
  s = cls_scores[:, :, :n].mean(axis=1)
  _, idx = jax.lax.top_k(s, k)
  return jnp.take_along_axis(x[:, :n], idx[..., None], axis=1)


def _unit(x: Array) -> Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def matching_loss(x: Array, cls_scores: Array, n: int, mask: Array | None = None,
                  k: int = TOP_K) -> Array:
  """docs/specs/02-ship.md §4: mean over (b, prompt j) of min over the top-k image tokens of
  1 - cos; rows b with mask[b] False (padding) are left out."""
  v = topk_tokens(x, cls_scores, n, k)
  p = x[:, n:]
  cos = jnp.einsum('bjd,bkd->bjk', _unit(p), _unit(v))
  per_row = (1.0 - cos).min(axis=-1).mean(axis=-1)
  return per_row.mean() if mask is None else base.masked_mean(per_row, mask)


def decoupled_attention(q: Array, k: Array, v: Array, *, y: Array, y_fixed: Array | None,
                        impl: str, n: int, weight: float, prompt_queries: bool, cls_scores: bool
                        ) -> tuple[Array, Array | None, Array | None]:
  """SHIP's decoupled attention (docs/specs/02-ship.md §5), a `prompter.Kernel`.

  Live tokens [0, n) and keys [0, n) are CLS + patches; keys [n, S) are prompts (live, fixed, then
  key/value-only ones: the order of keys does not matter). q: [B, n, H, Dh], or [B, T, H, Dh] with
  prompt_queries; k, v: [B, S, H, Dh]; y: [B, T, D] the normed live tokens; y_fixed: [C, D] the
  normed fixed prompts (or None).
    z' = (1-w)·softmax(Q_z K_zᵀ/√d) V_z + w·softmax(Q_z K_pᵀ/√d) V_p   (two separate softmaxes)
    p' = one joint softmax over all keys if prompt_queries, else the normed prompt itself.
  Returns (out [B, T, H, Dh], fixed out [C, H, Dh] or None, the CLS row of the image-to-image
  pre-softmax scores [B, H, n] when `cls_scores`, else None): only that row is formed, the rest is
  fused attention. With no prompt keys this is exactly the joint attention of the image tokens.
  """
  b, t = y.shape[:2]
  h, dh = q.shape[2:]
  qz = q[:, :n]
  out = attn_lib.dot_product_attention(qz, k[:, :n], v[:, :n], impl=impl)
  if k.shape[1] > n:
    out_p = attn_lib.dot_product_attention(qz, k[:, n:], v[:, n:], impl=impl)
    out = (1.0 - weight) * out + weight * out_p
  if t > n:
    if prompt_queries:
      prompt_out = attn_lib.dot_product_attention(q[:, n:], k, v, impl=impl)
    else:
      prompt_out = y[:, n:].reshape(b, t - n, h, dh)
    out = jnp.concatenate([out, prompt_out], axis=1)
  fixed_out = None if y_fixed is None else y_fixed.reshape(-1, h, dh)
  scores = attn_lib.attention_scores(q[:, :1], k[:, :n])[:, :, 0] if cls_scores else None
  return out, fixed_out, scores


def _tokens(parts: list[Array], b: int) -> Array | None:
  """Concatenates [P, D] / [B, P, D] token groups; [P, D] only when every group is."""
  parts = [p for p in parts if p.shape[-2]]
  if not parts:
    return None
  if any(p.ndim == 3 for p in parts):
    parts = [p if p.ndim == 3 else jnp.broadcast_to(p[None], (b,) + p.shape) for p in parts]
  return jnp.concatenate(parts, axis=-2)


class SHIPPrompter(Prompter):
  """Params under 'prompt/': independent [A, P, D], shared [10, D], attribute [2, 10, D],
  bank [K, D] (frozen constant set by `init_params`).

  Liveness per block (`live_tokens`): independent and attribute prompts are live inside their
  hierarchy and key/value-only in the block before the next anchor; the shared prompt is
  key/value-only in every block; in the last block every prompt is live in training (the matching
  loss reads them, and they issue queries) and key/value-only at inference (nothing reads them).
  Live prompts issue no queries before the last block (their attention output is their normed
  input), so at inference the independent prompts, the same for every example, are computed once
  per batch ('fixed' tokens). The CLS-row scores are formed in the block before an attribute anchor
  (carried to `insert`) and in the last training block (sown as 'ship_scores').
  """

  width: int
  depth: int
  anchors: tuple[int, ...]
  num_prompts: int
  num_image_tokens: int
  num_prototypes: int
  prompt_weight: float = 0.1
  bank_weight: float = 0.1
  fast_inference: bool = False
  live_tokens: bool = True

  def setup(self):
    d, p = self.width, self.num_prompts
    # The release: torch xavier_uniform_ on one (1, P, D) tensor per anchor.
    self.independent = self.param('independent', inits.xavier_uniform_3d(stacked=True),
                                  (len(self.anchors), p, d))
    self.shared = self.param('shared', inits.uniform(math.sqrt(6.0 / d)), (NUM_SHARED, d))
    self.attribute = self.param('attribute', inits.uniform(math.sqrt(6.0 / (NUM_ATTRIBUTE * d))),
                                (2, NUM_ATTRIBUTE, d))
    self.bank = self.param('bank', nn.initializers.zeros, (self.num_prototypes, d))

  def _attribute(self, slot: int, x: Array, cls_scores: Array) -> Array:
    z = topk_tokens(x, cls_scores, self.num_image_tokens)
    bank = jax.lax.stop_gradient(self.bank).astype(x.dtype)
    w = jax.nn.softmax(jnp.einsum('bkd,md->bkm', _unit(z), _unit(bank)), axis=-1)
    own = self.attribute[slot].astype(x.dtype)
    return self.bank_weight * (w @ bank) + (1 - self.bank_weight) * own

  def _attribute_slot(self, layer: int) -> int | None:
    """0 / 1 at the second-to-last / last anchor (never layer 0: no previous attention)."""
    if layer == 0 or layer not in self.anchors:
      return None
    slot = self.anchors.index(layer) - (len(self.anchors) - 2)
    return slot if slot >= 0 else None

  def _kernel(self, prompt_queries: bool, cls_scores: bool, sow_scores: bool):
    def kernel(q, k, v, *, y, y_fixed, impl):
      out, fixed_out, scores = decoupled_attention(
          q, k, v, y=y, y_fixed=y_fixed, impl=impl, n=self.num_image_tokens,
          weight=self.prompt_weight, prompt_queries=prompt_queries, cls_scores=cls_scores)
      if sow_scores:
        self.sow('aux', 'ship_scores', scores)
      return out, fixed_out, scores
    return kernel

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    x, n, b = prev.x, self.num_image_tokens, prev.x.shape[0]
    if layer in self.anchors:
      carried = [self.independent[self.anchors.index(layer)].astype(x.dtype)]
      slot = self._attribute_slot(layer)
      if slot is not None:
        carried.append(self._attribute(slot, x, prev.carry))
    elif self.live_tokens:  # the live path never carries the shared prompt's outputs
      carried = [x[:, n:]] + ([prev.fixed] if prev.fixed is not None else [])
    else:
      carried = [x[:, n:-NUM_SHARED]]
    shared = self.shared.astype(x.dtype)
    last = layer == self.depth - 1
    if last:  # training: the matching loss reads every prompt output
      keep = train or pool_reads_prompts or not (self.live_tokens or self.fast_inference)
      keep_carried = keep_shared = queries = keep
    else:
      keep_carried = not self.live_tokens or layer + 1 not in self.anchors
      keep_shared, queries = not self.live_tokens, False
    # Prompts issue no queries, so at inference (no drop path) a carried prompt that is the same
    # for every example stays so through its hierarchy: computed once (Tokens.fixed).
    fixed_ok = self.live_tokens and not train and not queries
    live, fixed, kv = [x[:, :n]], [], []
    for p in carried:
      (kv if not keep_carried else fixed if p.ndim == 2 and fixed_ok else live).append(p)
    (live if keep_shared else kv).append(shared)
    cls_scores = (last and train) or self._attribute_slot(layer + 1) is not None
    return Tokens(_tokens(live, b), kv=_tokens(kv, b), fixed=_tokens(fixed, b),
                  num_queries=None if queries else n,
                  kernel=self._kernel(queries, cls_scores, sow_scores=last and train))


def num_image_tokens(config: base.Config, arch: base.Arch) -> int:
  """CLS + patches of `config.data.image_size` images."""
  return (config.data.image_size // arch.patch_size) ** 2 + 1


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> SHIPPrompter:
  s = config.ship
  return SHIPPrompter(width=arch.width, depth=arch.depth,
                      anchors=tuple(int(a) for a in prepared['anchors']),
                      num_prompts=s.num_prompts, num_image_tokens=num_image_tokens(config, arch),
                      num_prototypes=int(np.asarray(prepared['bank']).shape[0]),
                      prompt_weight=s.prompt_weight, bank_weight=s.bank_weight,
                      fast_inference=s.fast_inference, live_tokens=config.model.live_tokens)


def init_params(params: Any, prepared: Any, config: base.Config) -> Any:
  del config
  params = jax.tree_util.tree_map(lambda a: a, params)  # shallow copy of the dicts
  prompt = dict(params['prompt'])
  prompt['bank'] = jnp.asarray(prepared['bank'], prompt['bank'].dtype)
  params = dict(params)
  params['prompt'] = prompt
  return params


def loss(inputs: base.LossInputs) -> tuple[Array, dict[str, Array]]:
  """CE + match_weight · matching loss on the last block's output (every token live in training)
  and its sown CLS-row scores."""
  ce, metrics = base.cross_entropy_loss(inputs)
  aux = inputs.aux.get('prompt', {})
  if 'ship_scores' not in aux:
    return ce, metrics
  scores = aux['ship_scores'][-1]  # [B, H, n]: the CLS row over the n image tokens
  lm = matching_loss(inputs.out['encoded'].astype(jnp.float32), scores.astype(jnp.float32),
                     scores.shape[-1], inputs.batch['mask'])
  total = ce + inputs.config.ship.match_weight * lm
  return total, {**metrics, 'match': lm, 'loss': total}


def check(c: base.Config) -> list[str]:
  """`config.ship`: counts >= 1."""
  return [p for key in ('num_prompts', 'num_prototypes', 'max_images', 'kmeans_n_init')
          for p in checks.at_least(f'ship.{key}', c.ship[key], 1)]


_SHIP = {'prompt/shared': 'semantic_share_prompt', 'prompt/attribute': 'attribute_prompt',
         'prompt/bank': 'feature_bank'}


def _ship_fwd(t: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  out = {f'compound_prompts_visual.{a}': p[None]
         for a, p in enumerate(t.pop('prompt/independent'))}
  out.update({v: t.pop(k) for k, v in _SHIP.items() if k in t})
  return {**out, **torch_names.head('head')[0](t)}


def _ship_inv(sd: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  idx = sorted(int(k.split('.')[1]) for k in sd if re.match(r'^compound_prompts_visual\.\d+$', k))
  if idx != list(range(len(idx))) or not idx:
    raise KeyError(f'compound_prompts_visual.0..{len(idx) - 1} expected, found indices {idx}')
  out = {'prompt/independent': np.concatenate(
      [sd.pop(f'compound_prompts_visual.{a}') for a in idx], 0)}
  out.update({k: sd.pop(v) for k, v in _SHIP.items() if v in sd})
  return {**out, **torch_names.head('head')[1](sd)}


def section(**over: Any) -> ConfigDict:
  """`config.ship` (docs/specs/02-ship.md)."""
  c = ConfigDict(dict(
      num_prompts=50,          # independent prompts per hierarchy (P)
      threshold=0.93,          # affinity threshold of the greedy hierarchy
      num_prototypes=200, max_images=1000,  # prototype bank: k-means of <= max_images features
      seed=42,                 # KMeans(random_state=42), as the release
      # The release calls KMeans(200, random_state=42) without n_init and pins torch==2.3.0, i.e.
      # scikit-learn >= 1.4, whose k-means++ default is 1 initialisation; 10 = before 1.4.
      kmeans_n_init=1,
      prompt_weight=0.1,       # image->prompt branch of the decoupled attention
      bank_weight=0.1,         # prototype share of the attribute prompt
      match_weight=0.5,        # prompt matching loss weight
      fast_inference=True,     # eval, model.live_tokens=False: last block's prompts kv-only
      affinity_path='', prototypes_path=''))  # the release's shipped .npy files (optional)
  c.update(over)
  return c


SHIP = base.register(base.Method(
    name='ship',
    model=base.ModelParts(
        build_prompter=build_prompter, init_params=init_params,
        torch_naming=torch_names.TorchNaming(_ship_fwd, _ship_inv, 'haoweiz23/SHIP')),
    recipe=base.Recipe(
        prepare=prepare, loss=loss,
        trainable=(r'^prompt/', r'^head/'), frozen=(r'^prompt/bank$',),
        prepare_keys=base.FEATURE_KEYS + ('ship.threshold', 'ship.num_prototypes',
                                          'ship.max_images', 'ship.seed', 'ship.kmeans_n_init'),
        prepare_files=('ship.affinity_path', 'ship.prototypes_path')),
    config_section='ship', section=section, check=check))
