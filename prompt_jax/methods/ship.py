"""SHIP: semantic hierarchical prompt tuning (spec 02).

Host side (`prepare`): per-layer CLS features of the frozen backbone on the training split ->
12x12 mean-cosine affinity -> greedy anchors (`greedy_anchors`); k-means prototype bank
(scikit-learn
KMeans, `random_state=config.ship.seed`, `n_init=config.ship.kmeans_n_init`) of last-layer CLS
features of up to 1000 training images. Precomputed `ship.affinity_path` / `ship.prototypes_path`
(.npy) replace the computation.

Token layout [CLS, patches (n-1), independent (P), (attribute 10), shared (10)]; prompts get no
position embedding. Every block uses decoupled attention (0.9 image / 0.1 prompt, two softmaxes);
prompts issue queries only at the last block. Loss = CE + ship.match_weight * matching loss.

`ship.fast_inference` (on by default; applies only when train=False): at the last block the
prompt tokens issue no queries and are dropped right after attention (`AttentionSpec.drop_prompts`),
so their residual and MLP are skipped; none of that reaches the CLS token, so the logits are
unchanged. Training always runs the full last block (its prompt outputs feed the matching loss).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax import progress
from prompt_jax.methods import base
from prompt_jax.models import attention as attn_lib
from prompt_jax.models import vit
from prompt_jax.models.prompter import Prompter

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


def prototype_bank(features: np.ndarray, k: int, seed: int = 0, n_init: int = 10) -> np.ndarray:
  """K-means (scikit-learn, fixed seed) centres of features [N, D] -> [min(k, N), D] float32."""
  from sklearn.cluster import KMeans
  f = np.asarray(features, np.float32)
  k = min(k, len(f))
  km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(f)
  return km.cluster_centers_.astype(np.float32)


def prepare(ctx: base.PrepareContext) -> dict[str, Any]:
  """{'anchors': tuple, 'bank': [K, D], 'affinity': [L, L]} from the frozen backbone (§1, §3)."""
  s = ctx.config.ship
  aff = np.load(s.affinity_path) if s.affinity_path else None
  bank = np.load(s.prototypes_path).astype(np.float32) if s.prototypes_path else None
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

def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def topk_tokens(x: Array, cls_scores: Array, n: int, k: int = TOP_K) -> Array:
  """x [B, T, D], cls_scores [B, H, T'] -> the k image tokens (of x[:, :n]) with the highest
  head-averaged CLS score, [B, k, D] (CLS itself may be picked)."""
  s = cls_scores[:, :, :n].mean(axis=1)
  _, idx = jax.lax.top_k(s, k)
  return jnp.take_along_axis(x[:, :n], idx[..., None], axis=1)


def _unit(x: Array) -> Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def matching_loss(x: Array, cls_scores: Array, n: int, k: int = TOP_K) -> Array:
  """Spec §4: mean over (b, prompt j) of min over the top-k image tokens of 1 - cos."""
  v = topk_tokens(x, cls_scores, n, k)
  p = x[:, n:]
  cos = jnp.einsum('bjd,bkd->bjk', _unit(p), _unit(v))
  return (1.0 - cos).min(axis=-1).mean()


class SHIPPrompter(Prompter):
  """Params under 'prompt/': independent [A, P, D], shared [10, D], attribute [2, 10, D],
  bank [K, D] (frozen constant set by `init_params`)."""

  width: int
  depth: int
  anchors: tuple[int, ...]
  num_prompts: int
  num_image_tokens: int
  num_prototypes: int
  prompt_weight: float = 0.1
  bank_weight: float = 0.1
  fast_inference: bool = False

  def setup(self):
    d, p = self.width, self.num_prompts
    self.independent = self.param('independent', _uniform(math.sqrt(6.0 / (p + d))),
                                  (len(self.anchors), p, d))
    self.shared = self.param('shared', _uniform(math.sqrt(6.0 / d)), (NUM_SHARED, d))
    self.attribute = self.param('attribute', _uniform(math.sqrt(6.0 / (NUM_ATTRIBUTE * d))),
                                (2, NUM_ATTRIBUTE, d))
    self.bank = self.param('bank', nn.initializers.zeros, (self.num_prototypes, d))

  def _attribute(self, slot: int, x: Array, prev_info: dict[str, Array]) -> Array:
    z = topk_tokens(x, prev_info['cls_scores'], self.num_image_tokens)
    bank = jax.lax.stop_gradient(self.bank).astype(x.dtype)
    w = jax.nn.softmax(jnp.einsum('bkd,md->bkm', _unit(z), _unit(bank)), axis=-1)
    own = self.attribute[slot].astype(x.dtype)
    return self.bank_weight * (w @ bank) + (1 - self.bank_weight) * own

  def insert(self, layer: int, x: Array, prev_info: Any, train: bool) -> Array:
    del train
    b = x.shape[0]
    bcast = lambda t: jnp.broadcast_to(t.astype(x.dtype)[None], (b,) + t.shape)
    shared = bcast(self.shared)
    if layer not in self.anchors:
      return jnp.concatenate([x[:, :-NUM_SHARED], shared], axis=1)
    a = self.anchors.index(layer)
    parts = [x[:, :self.num_image_tokens], bcast(self.independent[a])]
    attr_slot = a - (len(self.anchors) - 2)
    if attr_slot >= 0 and layer > 0:  # layer 0 has no previous attention: no attribute prompt
      parts.append(self._attribute(attr_slot, x, prev_info))
    parts.append(shared)
    return jnp.concatenate(parts, axis=1)

  def attention(self, layer: int, num_tokens: int, train: bool = False):
    del num_tokens
    last = layer == self.depth - 1
    fast = last and self.fast_inference and not train  # training keeps the full last block
    return attn_lib.AttentionSpec(kind='decoupled', num_image_tokens=self.num_image_tokens,
                                  prompt_weight=self.prompt_weight,
                                  prompt_queries=last and not fast,
                                  drop_prompts=fast), None

  def observe(self, layer: int, x_in: Array, x_out: Array, info: dict[str, Array],
              train: bool) -> None:
    del x_in
    if train and layer == self.depth - 1:
      self.sow('aux', 'ship_x', x_out)
      self.sow('aux', 'ship_scores', info['cls_scores'])


def num_image_tokens(config: base.Config) -> int:
  arch = vit.decode_variant(config.model.variant)
  return (config.data.image_size // arch['patch_size']) ** 2 + 1


def build_prompter(config: base.Config, prepared: Any) -> SHIPPrompter:
  arch = vit.decode_variant(config.model.variant)
  s = config.ship
  return SHIPPrompter(width=arch['width'], depth=arch['depth'],
                      anchors=tuple(int(a) for a in prepared['anchors']),
                      num_prompts=s.num_prompts, num_image_tokens=num_image_tokens(config),
                      num_prototypes=int(np.asarray(prepared['bank']).shape[0]),
                      prompt_weight=s.prompt_weight, bank_weight=s.bank_weight,
                      fast_inference=s.fast_inference)


def init_params(params: Any, prepared: Any, config: base.Config) -> Any:
  del config
  params = jax.tree_util.tree_map(lambda a: a, params)  # shallow copy of the dicts
  prompt = dict(params['prompt'])
  prompt['bank'] = jnp.asarray(prepared['bank'], prompt['bank'].dtype)
  params = dict(params)
  params['prompt'] = prompt
  return params


def loss(inputs: base.LossInputs) -> tuple[Array, dict[str, Array]]:
  ce, metrics = base.cross_entropy_loss(inputs)
  aux = inputs.aux.get('prompt', {})
  if 'ship_x' not in aux:
    return ce, metrics
  n = num_image_tokens(inputs.config)
  lm = matching_loss(aux['ship_x'][-1].astype(jnp.float32),
                     aux['ship_scores'][-1].astype(jnp.float32), n)
  total = ce + inputs.config.ship.match_weight * lm
  return total, {**metrics, 'match': lm, 'loss': total}


SHIP = base.register(base.Method(name='ship', build_prompter=build_prompter, prepare=prepare,
                                 init_params=init_params, loss=loss,
                                 trainable=(r'^prompt/', r'^head/'), frozen=(r'^prompt/bank$',)))
