"""DA-VPT (distribution-aware visual prompt tuning), per docs/specs/03-davpt.md.

Deep prompts, token layout [CLS, prompts_i, patches] at block i; the previous block's prompt outputs
are dropped every layer. Proxy layers [proxy_start, proxy_end] carry P proxy prompts (one per class
cluster); the other layers carry `num_other` prompts (may be 0). Loss:

  L = CE + (1/|Lp|) Σ_{l∈Lp} [λ_patch·L_patch^l + λ_cls·L_cls^l]

with the proxy-anchor loss between anchors and the proxy prompts, positives = samples whose class
maps to the proxy's cluster (metric label m(y), held in the method state and remapped between
epochs).

Anchors at a proxy layer: CLS anchor = the full query of CLS ([B, H·Dh]; the block sows its
'queries'); patch anchor `patch_anchor='input_mean'` (default; what the release executes) = mean of
the block-input image tokens (pre-LN), or 'attn_out' (what its configs ask for) = attention output
(after the output projection) at the prompt slot of m(y) (the block sows its 'attn_out').

Live tokens (`model.live_tokens`, default True; exact): prompts are replaced after every block, so
they are key/value-only, except in the last block when the pool reads them (MAE: mean over
tokens[1:]) and in the proxy layers with the 'attn_out' anchor. The prompt mask restricts only
prompt queries, so it applies only where prompts are live. `model.live_tokens=False` computes every
token in every block, as the release does.

Release behaviour kept as the default: `prompt_norm` ('none' in the release's VTAB configs, 'l2'
in its FGVC cub/dogs configs: see configs/davpt_fgvc.py) normalises every prompt before it enters
its block; the patch-embedding bias trains with the other biases; prompts are xavier-uniform over
the 3-D tensor (`init_div8`: /8); the data recipe (class-balanced sampler that repeats classes
when a batch needs more than the split has, shorter-side resize + centre crop, full batches only)
is in configs/davpt_vtab.py.
Differences from the release (deliberate): unknown config keys are errors (locked configs) and a
missing anchor/proxy is an error, never a silent zero loss. The configs' head is the release's timm
`trunc_normal_(std=.02)` (cut-offs ±2 absolute: `model.head_init='normal'`); flax's
`trunc_normal` (cut at ±2σ, std 0.0176) is `model.head_init='trunc_normal'`.
"""

from __future__ import annotations

from typing import Any

from ml_collections import ConfigDict

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import checks
from prompt_jax.methods import base
from prompt_jax.methods import torch_names
from prompt_jax.methods import inits
from prompt_jax.methods import kmeans
from prompt_jax.methods.proxy_losses import proxy_anchor_loss, proxy_nca_loss
from prompt_jax.models import vit
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens

Array = Any

# Always trainable beyond prompts + head: biases of v, proj (out), fc2 and norm2, and the patch
# embedding bias (the release's 'proj.bias' matches the last two name parts, so it trains
# `patch_embed.proj.bias` as well as `attn.proj.bias`). "Bias of norm2" is read as the LayerNorm_2
# bias only (its scale stays frozen). davpt.train_k_bias / train_norm1 / train_cls add the others.
TRAINABLE = (r'^prompt/', r'^head/', r'^embedding/bias$',
             r'MultiHeadDotProductAttention_1/value/bias$',
             r'MultiHeadDotProductAttention_1/out/bias$', r'MlpBlock_3/Dense_1/bias$',
             r'LayerNorm_2/bias$')
EXTRA_TRAINABLE = {
    'train_k_bias': (r'MultiHeadDotProductAttention_1/key/bias$',),
    'train_norm1': (r'/LayerNorm_0/',),
    'train_cls': (r'^cls$',),
}


def trainable(config: base.Config) -> tuple[str, ...]:
  """TRAINABLE plus the extras switched on in `config.davpt`."""
  extra = [p for flag, pats in EXTRA_TRAINABLE.items() if config.davpt[flag] for p in pats]
  return TRAINABLE + tuple(extra)


class DAVPTPrompter(Prompter):
  """proxy: [n_proxy_layers, P, D] under 'prompt/proxy'; other: [depth - n_proxy_layers, nP, D]
  under 'prompt/other' (absent when nP = 0); prompt_norm='layer' adds 'prompt/norm/{scale,bias}'.

  Every prompt goes through `prompt_norm` before it enters its block (the release's `vpt_norm` in
  forward_features): 'none', 'l2' (x / max(|x|, 1e-6)) or 'layer' (one trainable affine LayerNorm,
  eps 1e-6, shared by all layers). The loss sees the normed proxies. Prompt dropout is applied
  after the broadcast to the batch (one mask per example, as the release).
  """

  width: int
  depth: int
  num_proxies: int
  num_other: int
  proxy_start: int
  proxy_end: int
  mask_prompts: bool = False
  init_div8: bool = False
  patch_anchor: str = 'input_mean'
  dropout: float = 0.0
  prompt_norm: str = 'none'
  live_tokens: bool = True

  def setup(self):
    if not 0 <= self.proxy_start <= self.proxy_end < self.depth:
      raise ValueError(f'proxy layers [{self.proxy_start}, {self.proxy_end}] outside depth '
                       f'{self.depth}')
    if self.patch_anchor not in ('input_mean', 'attn_out'):
      raise ValueError(f"davpt.patch_anchor must be 'input_mean' or 'attn_out', got "
                       f'{self.patch_anchor!r}')
    if self.prompt_norm not in ('none', 'l2', 'layer'):
      raise ValueError(f"davpt.prompt_norm must be 'none', 'l2' or 'layer', got "
                       f'{self.prompt_norm!r}')
    n_proxy = self.proxy_end - self.proxy_start + 1
    init = inits.xavier_uniform_3d(1 / 8 if self.init_div8 else 1.0)
    self.proxy = self.param('proxy', init, (n_proxy, self.num_proxies, self.width))
    n_rest = self.depth - n_proxy
    self.other = (self.param('other', init, (n_rest, self.num_other, self.width))
                  if self.num_other > 0 and n_rest > 0 else None)
    self.norm = nn.LayerNorm(epsilon=1e-6) if self.prompt_norm == 'layer' else None
    self.drop = nn.Dropout(self.dropout)

  def normed(self, p: Array) -> Array:
    """[n, D] prompts after `prompt_norm`."""
    if self.prompt_norm == 'l2':
      return p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-6)
    if self.norm is not None:
      return self.norm(p)
    return p

  def is_proxy(self, layer: int) -> bool:
    return self.proxy_start <= layer <= self.proxy_end

  def count(self, layer: int) -> int:
    """Number of prompt tokens in block `layer`'s input."""
    return self.num_proxies if self.is_proxy(layer) else self.num_other

  def layer_prompts(self, layer: int) -> Array | None:
    """[n, D] normed prompts of block `layer` (None: no prompts there)."""
    if self.is_proxy(layer):
      return self.normed(self.proxy[layer - self.proxy_start])
    if self.other is None:
      return None
    return self.normed(self.other[layer if layer < self.proxy_start else
                                  layer - (self.proxy_end + 1 - self.proxy_start)])

  def prompts_live(self, layer: int, pool_reads_prompts: bool = False) -> bool:
    """Whether block `layer`'s prompts are live: their outputs are read by the pool (last block,
    MAE) or by the 'attn_out' patch anchor (proxy layers); otherwise they are key/value-only (the
    next block replaces them). Always live with `live_tokens=False`."""
    if not self.live_tokens:
      return True
    last = layer == self.depth - 1
    return (last and pool_reads_prompts) or (self.is_proxy(layer) and
                                             self.patch_anchor == 'attn_out')

  def prompt_mask(self, layer: int, num_tokens: int) -> Array:
    """bool [T, T] for [CLS, n prompts, patches]: prompt queries see the image tokens only."""
    n = self.count(layer)
    mask = np.ones((num_tokens, num_tokens), bool)
    mask[1:1 + n, :1 + n] = False
    return jnp.asarray(mask)

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    x = prev.x
    n_prev = self.count(layer - 1) if layer > 0 and self.prompts_live(layer - 1) else 0
    image = x[:, 1 + n_prev:]  # the previous block's prompt outputs are dropped
    proxy = self.is_proxy(layer)
    sow = ()
    if proxy:  # the loss reads: proxies, the CLS query, the patch anchor
      self.sow('aux', 'proxies', self.layer_prompts(layer))  # after prompt_norm
      sow = ('queries',)
      if self.patch_anchor == 'input_mean':
        self.sow('aux', 'patch_anchor', image.mean(axis=1))
      else:
        sow += ('attn_out',)
    x = x if n_prev == 0 else jnp.concatenate([x[:, :1], image], axis=1)
    p = self.layer_prompts(layer)
    if p is None:
      return Tokens(x, sow=sow)
    p = p.astype(x.dtype)
    if train and self.dropout > 0:  # after the broadcast (the release): one mask per example
      p = self.drop(jnp.broadcast_to(p[None], (x.shape[0],) + p.shape), deterministic=False)
    if not self.prompts_live(layer, pool_reads_prompts):
      return Tokens(x, kv=p, sow=sow)  # x = [CLS, patches]; the mask restricts prompt queries only
    p = jnp.broadcast_to(p, (x.shape[0],) + p.shape[-2:])
    live = jnp.concatenate([x[:, :1], p, image], axis=1)
    mask = self.prompt_mask(layer, live.shape[1]) if self.mask_prompts else None
    return Tokens(live, mask=mask, sow=sow)


# ---------------------------------------------------------------- losses


LOSSES = {'proxy_anchor': proxy_anchor_loss, 'proxy_nca': proxy_nca_loss}


def loss(inputs: base.LossInputs) -> tuple[Array, dict[str, Array]]:
  ce, metrics = base.cross_entropy_loss(inputs)
  c = inputs.config.davpt
  if c.loss not in LOSSES:
    raise ValueError(f'unknown davpt.loss {c.loss!r}; known: {sorted(LOSSES)}')
  if c.lambda_patch == 0 and c.lambda_cls == 0:
    return ce, metrics
  aux = inputs.aux.get('prompt', {})  # the prompter's sown values live under its module name
  for k in ('proxies',) + (('patch_anchor',) if c.patch_anchor == 'input_mean' else ()):
    if k not in aux:
      raise KeyError(f"DA-VPT loss needs aux['prompt'][{k!r}] sown by the proxy layers; got "
                     f'{jax.tree_util.tree_map(jnp.shape, inputs.aux)}')
  fn = LOSSES[c.loss]
  kw = dict(alpha=c.alpha, delta_pos=c.delta_pos, delta_neg=c.delta_neg, scale=c.scale)
  m = inputs.method_state['map'][inputs.batch['label']]
  mask = inputs.batch['mask']
  b = m.shape[0]
  l_patch, l_cls = 0.0, 0.0
  layers = range(c.proxy_start, c.proxy_end + 1)
  for i, layer in enumerate(layers):
    prox = aux['proxies'][i]  # after prompt_norm, as they entered the block
    zc = vit.sown(inputs.aux, layer, 'queries')[:, 0].reshape(b, -1)  # the full CLS query
    if c.patch_anchor == 'input_mean':
      za = aux['patch_anchor'][i]
    else:  # attention output at the prompt slot of m(y); block input [CLS, prompts, patches]
      za = vit.sown(inputs.aux, layer, 'attn_out')[:, 1:1 + prox.shape[0]]
      za = jnp.take_along_axis(za, m[:, None, None], axis=1)[:, 0]
    l_patch += fn(za, prox, m, mask, **kw) / len(layers)
    l_cls += fn(zc, prox, m, mask, **kw) / len(layers)
  total = ce + c.lambda_patch * l_patch + c.lambda_cls * l_cls
  return total, dict(metrics, da_patch=l_patch, da_cls=l_cls)


# ---------------------------------------------------------------- class clusters


def cluster_classes(class_means: np.ndarray, seen: np.ndarray, num_proxies: int, *, seed: int,
                    iters: int = 20, tol: float = 1e-4) -> dict[str, np.ndarray]:
  """Class -> cluster map by cosine k-means over non-affine-LN'd class means.

  class_means: [C, D]; seen: bool[C]. Returns {'num_proxies', 'class_map' int32[C], 'centroids'
  [P, D]}. C < P: P := C and the identity map. Unseen classes get a random cluster (seeded).
  """
  c_num = len(class_means)
  rng = np.random.default_rng(seed)
  if c_num < num_proxies:
    return {'num_proxies': c_num, 'class_map': np.arange(c_num, dtype=np.int32),
            'centroids': kmeans._unit(kmeans.layer_norm(class_means)).astype(np.float32)}
  if seen.sum() < num_proxies:
    raise ValueError(f'DA-VPT clustering: only {int(seen.sum())} of {c_num} classes have training '
                     f'images, fewer than davpt.num_proxies={num_proxies}; lower num_proxies or '
                     'use a training split that covers more classes')
  x = kmeans.layer_norm(class_means[seen])
  init = x[rng.choice(len(x), size=num_proxies, replace=False)]
  assign, cent = kmeans.cosine_kmeans(x, num_proxies, init=init, iters=iters, tol=tol)
  cmap = rng.integers(0, num_proxies, size=c_num).astype(np.int32)
  cmap[seen] = assign
  return {'num_proxies': num_proxies, 'class_map': cmap, 'centroids': cent}


def _backbone_feature(ctx: base.PrepareContext):
  """select(logits, out) for the clustering feature: CLS after the final norm, or (pool != 'cls',
  MAE) encoder_norm(mean of the patch tokens)."""
  cfg = ctx.config
  if cfg.model.pool == 'cls':
    return lambda l, o: o['normed'][:, 0]
  ln = ctx.backbone_params['Transformer']['encoder_norm']
  eps = cfg.model.ln_eps

  def select(l, o):
    x = o['encoded'][:, 1:].mean(axis=1)
    mu = x.mean(-1, keepdims=True)
    x = (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return x * ln['scale'] + ln['bias']
  return select


def prepare(ctx: base.PrepareContext) -> dict[str, Any]:
  cfg = ctx.config
  c = cfg.davpt
  num_classes = ctx.source.num_classes
  feats, labels = ctx.features(cfg.data.train_split, _backbone_feature(ctx))
  feats = np.asarray(feats, np.float64)
  means = np.zeros((num_classes, feats.shape[1]))
  seen = np.zeros(num_classes, bool)
  for k in range(num_classes):
    rows = feats[labels == k][:c.cluster_images_per_class]
    if len(rows):
      means[k], seen[k] = rows.mean(0), True
  out = cluster_classes(means, seen, c.num_proxies, seed=cfg.seed, iters=c.kmeans_iters,
                        tol=c.kmeans_tol)
  logging.info('DA-VPT clusters: P=%d, sizes %s', out['num_proxies'],
               np.bincount(out['class_map'], minlength=out['num_proxies']).tolist())
  return out


# ---------------------------------------------------------------- method state (dynamic remap)


def init_state(prepared: dict[str, Any], config: base.Config) -> dict[str, Array]:
  cmap = np.asarray(prepared['class_map'], np.int32)
  cent = np.asarray(prepared['centroids'], np.float32)
  return {'map': jnp.asarray(cmap), 'centroids': jnp.asarray(cent),
          'sums': jnp.zeros((len(cmap), cent.shape[1]), jnp.float32),
          'counts': jnp.zeros((len(cmap),), jnp.float32)}


def update_state(state: dict[str, Array], inputs: base.LossInputs) -> dict[str, Array]:
  """Accumulates per-class sums / counts of the head-input feature (inside the jitted step)."""
  f = inputs.out['pre_logits'].astype(jnp.float32)
  w = jax.nn.one_hot(inputs.batch['label'], state['sums'].shape[0]) * inputs.batch['mask'][:, None]
  return dict(state, sums=state['sums'] + w.T @ f, counts=state['counts'] + w.sum(0))


def epoch_end(state: dict[str, Any], epoch: int, config: base.Config) -> dict[str, Any]:
  """From epoch `dynamic_kmeans` (> 0): re-run cosine k-means on the LN'd class means, starting at
  the previous centroids; accept when > 1 cluster is used. Statistics are reset every epoch.
  Classes with no image this epoch get a uniformly random cluster at each remap, as the release's
  `cosine_kmeans` (model_creator.py: `torch.randint(k, ...)` for all-zero class means), seeded by
  (seed, epoch). C < P (identity map) is never remapped."""
  c = config.davpt
  state = {k: np.asarray(v) for k, v in state.items()}
  cmap, cent = state['map'], state['centroids']
  identity = len(cmap) == len(cent) and np.array_equal(cmap, np.arange(len(cmap)))
  seen = state['counts'] > 0
  if c.dynamic_kmeans > 0 and epoch >= c.dynamic_kmeans and not identity and seen.sum() > 1:
    means = state['sums'][seen] / state['counts'][seen, None]
    assign, new_cent = kmeans.cosine_kmeans(kmeans.layer_norm(means), len(cent), init=cent,
                                            iters=c.kmeans_iters, tol=c.kmeans_tol)
    if len(np.unique(assign)) > 1:
      cmap = cmap.copy()
      cmap[seen] = assign
      rng = np.random.default_rng([config.seed, epoch])
      cmap[~seen] = rng.integers(0, len(cent), int((~seen).sum()))
      cent = new_cent
  return {'map': cmap.astype(np.int32), 'centroids': cent.astype(np.float32),
          'sums': np.zeros_like(state['sums']), 'counts': np.zeros_like(state['counts'])}


# ---------------------------------------------------------------- method


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> DAVPTPrompter:
  c = config.davpt
  p = prepared['num_proxies'] if prepared else c.num_proxies
  return DAVPTPrompter(width=arch.width, depth=arch.depth, num_proxies=int(p),
                       num_other=c.num_other, proxy_start=c.proxy_start, proxy_end=c.proxy_end,
                       mask_prompts=c.mask_prompts, init_div8=c.init_div8,
                       patch_anchor=c.patch_anchor, dropout=c.dropout,
                       prompt_norm=c.prompt_norm, live_tokens=config.model.live_tokens)


def prompt_slots(config: base.Config, arch: base.Arch, prepared: Any
                 ) -> dict[str, tuple[int, ...]]:
  del prepared
  c, depth = config.davpt, arch.depth
  proxy = tuple(range(c.proxy_start, c.proxy_end + 1))
  slots = {'prompt/proxy': proxy}
  if c.num_other > 0 and len(proxy) < depth:
    slots['prompt/other'] = tuple(i for i in range(depth) if i not in proxy)
  return slots


def check(c: base.Config) -> list[str]:
  """`config.davpt`: counts, rates, choices and the proxy layer range."""
  d = c.davpt
  out = checks.at_least('davpt.num_proxies', d.num_proxies, 1)
  out += checks.at_least('davpt.num_other', d.num_other, 0)
  out += checks.fraction('davpt.dropout', d.dropout)
  out += checks.one_of('davpt.loss', d.loss, ('proxy_anchor', 'proxy_nca'))
  out += checks.one_of('davpt.prompt_norm', d.prompt_norm, ('l2', 'layer', 'none'))
  out += checks.one_of('davpt.patch_anchor', d.patch_anchor, ('input_mean', 'attn_out'))
  if not 0 <= d.proxy_start <= d.proxy_end:
    out.append(f'davpt.proxy_start={d.proxy_start}, proxy_end={d.proxy_end}: need '
               '0 <= proxy_start <= proxy_end (layers, inclusive)')
  return out


# DA-VPT's trained backbone tensors: our flat name <-> timm name (the release's split q/k/v).
_BLOCK = 'Transformer/encoderblock_{}/'
_MHA = _BLOCK + 'MultiHeadDotProductAttention_1/'
_TIMM = [
    ('embedding/bias', 'patch_embed.proj.bias'), ('cls', 'cls_token'),
    (_MHA + 'query/bias', 'blocks.{}.attn.q.bias'), (_MHA + 'key/bias', 'blocks.{}.attn.k.bias'),
    (_MHA + 'value/bias', 'blocks.{}.attn.v.bias'), (_MHA + 'out/bias', 'blocks.{}.attn.proj.bias'),
    (_BLOCK + 'LayerNorm_0/scale', 'blocks.{}.norm1.weight'),
    (_BLOCK + 'LayerNorm_0/bias', 'blocks.{}.norm1.bias'),
    (_BLOCK + 'LayerNorm_2/scale', 'blocks.{}.norm2.weight'),
    (_BLOCK + 'LayerNorm_2/bias', 'blocks.{}.norm2.bias'),
    (_BLOCK + 'MlpBlock_3/Dense_0/bias', 'blocks.{}.mlp.fc1.bias'),
    (_BLOCK + 'MlpBlock_3/Dense_1/bias', 'blocks.{}.mlp.fc2.bias'),
]
_DAVPT = {'prompt/proxy': 'proxy_prompt_tokens', 'prompt/other': 'other_prompt_tokens',
          'prompt/norm/scale': 'vpt_norm.weight', 'prompt/norm/bias': 'vpt_norm.bias'}


def _davpt_fwd(t: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  out = {v: t.pop(k) for k, v in _DAVPT.items() if k in t}
  out.update(torch_names.rename(t, _TIMM))
  return {**out, **torch_names.head('head')[0](t)}


def _davpt_inv(sd: torch_names.Arrays, config: Any) -> torch_names.Arrays:
  del config
  out = {k: sd.pop(v) for k, v in _DAVPT.items() if v in sd}
  out.update(torch_names.rename(sd, [(b, a) for a, b in _TIMM if 'head' not in b]))
  return {**out, **torch_names.head('head')[1](sd)}


def section(**over: Any) -> ConfigDict:
  """`config.davpt` (docs/specs/03-davpt.md)."""
  c = ConfigDict(dict(
      num_proxies=10, num_other=5,     # P proxy prompts (class clusters), nP other prompts
      proxy_start=11, proxy_end=11,    # proxy layers, inclusive
      lambda_patch=0.01, lambda_cls=0.01,  # weights of the patch and CLS anchor losses
      alpha=32.0, delta_pos=0.1, delta_neg=-0.1,  # proxy-anchor loss: alpha, margins
      scale=5.0,                       # similarity scale r of s = r·cos(z, p)
      loss='proxy_anchor',             # 'proxy_anchor' | 'proxy_nca'
      prompt_norm='none',              # before each block: 'none' | 'l2' | 'layer' (affine LN)
      patch_anchor='input_mean',       # 'input_mean' (executed) | 'attn_out' (the configs' intent)
      mask_prompts=False,              # prompt queries see image tokens only
      train_k_bias=False, train_norm1=False, train_cls=False,  # extra trainable params
      init_div8=False,                 # prompts' xavier init divided by 8
      dynamic_kmeans=10,               # remap classes from this epoch (0: never)
      cluster_images_per_class=10,     # images per class for the initial class means
      kmeans_iters=20, kmeans_tol=1e-4,  # cosine k-means of the class means
      dropout=0.0))                    # prompt dropout, per example
  c.update(over)
  return c


DAVPT = base.register(base.Method(
    name='davpt',
    model=base.ModelParts(
        build_prompter=build_prompter, prompt_slots=prompt_slots,
        torch_naming=torch_names.TorchNaming(_davpt_fwd, _davpt_inv, 'Noahsark/DA-VPT')),
    recipe=base.Recipe(
        prepare=prepare, loss=loss, init_state=init_state, update_state=update_state,
        epoch_end=epoch_end, trainable=trainable,
        prepare_keys=base.FEATURE_KEYS + ('seed', 'davpt.num_proxies',
                                          'davpt.cluster_images_per_class', 'davpt.kmeans_iters',
                                          'davpt.kmeans_tol')),
    config_section='davpt', section=section, check=check))
