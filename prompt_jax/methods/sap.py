"""SAP: semantic alignment for prompt tuning of CLIP (docs/specs/04-spt-sap.md, SAP part), on IVLP
deep prompts.

Model (`SAPModel`, a CLIP with two prompters):
  text   4 context tokens replace positions 1..4 (after SOT) of every templated description; layer 0
         ctx [4, 512] is initialised from the token embeddings of "a photo of a" (`init_params`),
         text blocks 1..depth-1 replace them with fresh N(0, .02) tokens ('text_prompt/deep').
  vision 4 tokens [depth, 4, 768] N(0, .02) appended AFTER the patches (after pos-emb, before
         ln_pre); vision blocks 1..depth-1 replace the last 4 tokens. `visual_prompt/token_bias` [E]
         (zeros) is the learnable bias b added to the projected non-CLS tokens.
  Description-guided image feature (`description_feature`, the spec's formula) at the last block:
    H = ln_post(Z)@proj (+ b on non-CLS), g = H[:,0], X = H[:,1:1+N]; A = frozen zero-shot text
    features of the raw descriptions [M, E] (NOT normalised: the release; `sap.normalize_desc` opts
    in); r = softmax_M(g·Aᵀ); S = softmax_N(A·Xᵀ); F = S·X; λ = Σ_m r_m max_j S_mj;
    f = (1-λ)g + λ Σ_m r_m F_m, L2-normalised.
  T = normalised prompted text features of the templated descriptions [M, E];
  logits = mean over each class's descriptions of exp(logit_scale)·f·Tᵀ.
Loss = CE + text_weight·mean|T̂₀ - T̂| + image_weight·mean|ĝ₀ - ĝ|, T̂₀ / ĝ₀ frozen zero-shot
(no-prompt) features, ĝ the normalised prompted g (without b) as the release.

Templated text (`templated`, the release's `process_attributes`): "a photo of a {classname},
which {description}." when the description starts with "is" or "has", else "a photo of a
{classname}, which has {description}.", commas and periods removed from the description, keeping
the WHOLE description (the release splits on the first comma and drops the part before it; fixed
here).
Text features: recomputed in every training step through the prompted text tower (the hot spot;
the description ids are cut to the longest description, exact under the causal mask, ~3-4x less
text compute than 77 tokens);
with `sap.text_prompts='frozen'` they are computed once by `init_params` and cached in the frozen
param 'text_cache/features'. For evaluation, `encode_descriptions` once and pass `text_features=`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ml_collections import ConfigDict
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_jax.util import checks
from prompt_jax.data import fewshot  # (registers data 'fewshot')
from prompt_jax.methods import base
from prompt_jax.models import arch as arch_lib
from prompt_jax.models import clip as clip_lib
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.text import tokenizer as tok_lib

Array = Any
TEMPLATE = 'a photo of a {classname}, {which} {description}.'


# ----------------------------------------------------------------------------- descriptions


def load_descriptions(path: str) -> dict[str, list[str]]:
  with open(path, encoding='utf-8') as f:
    data = json.load(f)
  if not isinstance(data, dict):
    raise ValueError(f'{path}: expected a JSON object {{class name: [description, ...]}}')
  return {k: [v] if isinstance(v, str) else list(v) for k, v in data.items()}


def class_descriptions(descriptions: dict[str, list[str]], classname: str) -> list[str]:
  """Descriptions of `classname`, matched exactly, then with '_' -> ' ', then case-insensitively."""
  keys = {k.lower(): k for k in descriptions}
  for cand in (classname, classname.replace('_', ' ')):
    if cand in descriptions:
      return descriptions[cand]
    if cand.lower() in keys:
      return descriptions[keys[cand.lower()]]
  raise KeyError(f'no descriptions for class {classname!r} (have {len(descriptions)} classes, e.g. '
                 f'{sorted(descriptions)[:5]})')


def templated(classname: str, description: str, template: str = TEMPLATE) -> str:
  """The release's `process_attributes`: {which} = 'which' when the description's first word
  (split at ' ') is 'is' or 'has', else 'which has'; commas and periods are removed from the
  description. Its comma bug is fixed: the WHOLE description is kept (the release keeps only the
  part after the first comma, without 'which'). Class name: '_' -> ' ', lower-cased."""
  if 'which has {description}' in template:
    raise ValueError(f'sap.template {template!r} writes "which has" before every description '
                     '("which has has ..."); write "{which} {description}": {which} is "which" '
                     'or "which has" per description, as the release.')
  which = 'which' if description.split(' ')[0] in ('is', 'has') else 'which has'
  desc = re.sub(r'[,.]', '', description.strip())
  return template.format(classname=classname.replace('_', ' ').lower(), which=which,
                         description=desc)


def description_table(classnames: Sequence[str], descriptions: dict[str, list[str]],
                      template: str = TEMPLATE, max_per_class: int = -1
                      ) -> tuple[list[str], list[str], np.ndarray]:
  """(raw descriptions [M], templated texts [M], class index of each int32 [M])."""
  raw, texts, owner = [], [], []
  for c, name in enumerate(classnames):
    ds = class_descriptions(descriptions, name)
    if max_per_class > 0:
      ds = ds[:max_per_class]
    if not ds:
      raise ValueError(f'class {name!r} has no descriptions')
    raw += ds
    texts += [templated(name, d, template) for d in ds]
    owner += [c] * len(ds)
  return raw, texts, np.asarray(owner, np.int32)


def class_average(owner: np.ndarray, num_classes: int) -> np.ndarray:
  """W [M, C]: W[m, c] = 1/|descriptions of c| if m describes c (logits = s @ W)."""
  w = np.zeros((len(owner), num_classes), np.float32)
  w[np.arange(len(owner)), owner] = 1.0
  return w / np.maximum(w.sum(0, keepdims=True), 1.0)


# ----------------------------------------------------------------------------- feature math


def description_feature(g: Array, x: Array, a: Array) -> Array:
  """Description-guided image feature. g [B,E], x [B,N,E], a [M,E] -> f [B,E] L2-normalised."""
  r = jax.nn.softmax(g @ a.T, axis=-1)                                   # [B, M]
  s = jax.nn.softmax(jnp.einsum('me,bne->bmn', a, x), axis=-1)           # [B, M, N]
  f_m = jnp.einsum('bmn,bne->bme', s, x)                                 # [B, M, E]
  lam = jnp.sum(r * s.max(-1), axis=-1)                                  # [B]
  f_tilde = jnp.einsum('bm,bme->be', r, f_m)
  f = (1.0 - lam)[:, None] * g + lam[:, None] * f_tilde
  return clip_lib.l2_normalize(f)


# ----------------------------------------------------------------------------- prompters


class IVLPTextPrompter(Prompter):
  """ctx [n, W] replaces positions 1..n at layer 0 (before pos-emb); deep [depth-1, n, W] before
  blocks 1..depth-1."""

  n_ctx: int
  width: int
  depth: int

  def setup(self):
    init = nn.initializers.normal(0.02)
    self.ctx = self.param('ctx', init, (self.n_ctx, self.width))
    self.deep = (self.param('deep', init, (self.depth - 1, self.n_ctx, self.width))
                 if self.depth > 1 else None)

  def insert(self, layer: int, prev: BlockOutput, train: bool) -> Array:
    del train
    x = prev.x
    if layer >= self.depth:
      return x
    p = self.ctx if layer == 0 else self.deep[layer - 1]
    p = jnp.broadcast_to(p.astype(x.dtype)[None], (x.shape[0],) + p.shape)
    return jnp.concatenate([x[:, :1], p, x[:, 1 + self.n_ctx:]], axis=1)


class IVLPVisionPrompter(Prompter):
  """prompts [depth, n, D]: appended after the patches at layer 0, replace the last n tokens before
  blocks 1..depth-1. token_bias [E]: SAP's bias b on the projected non-CLS tokens."""

  n_ctx: int
  width: int
  depth: int
  embed_dim: int

  def setup(self):
    self.prompts = self.param('prompts', nn.initializers.normal(0.02),
                              (self.depth, self.n_ctx, self.width))
    self.token_bias = self.param('token_bias', nn.initializers.zeros, (self.embed_dim,))

  def insert(self, layer: int, prev: BlockOutput, train: bool) -> Array:
    del train
    x = prev.x
    if layer >= self.depth:
      return x
    p = jnp.broadcast_to(self.prompts[layer].astype(x.dtype)[None],
                         (x.shape[0], self.n_ctx, self.width))
    keep = x if layer == 0 else x[:, :-self.n_ctx]
    return jnp.concatenate([keep, p], axis=1)


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True, eq=False)
class Consts:
  """Host constants of one class set (identity-hashed so the module stays hashable).

  ids int32 [M, L] templated descriptions; owner int32 [M]; desc_feats [M, E] (A);
  zs_text [M, E] normalised zero-shot features of the templated descriptions."""

  ids: np.ndarray
  owner: np.ndarray
  desc_feats: np.ndarray
  zs_text: np.ndarray
  num_classes: int


class SAPModel(clip_lib.CLIP):
  """CLIP + IVLP prompters + the description head. apply(images, train) -> (logits [B,C], out)."""

  consts: Consts | None = None
  cache_text: bool = False

  def setup(self):
    super().setup()
    if self.cache_text:
      self.text_cache = self.param('text_cache', nn.initializers.zeros,
                                   (len(self.consts.ids), self.embed_dim))

  def encode_descriptions(self, train: bool = False) -> Array:
    """T̂ [M, E]: normalised prompted text features of the templated descriptions (ids trimmed to
    the longest description: exact under the causal mask)."""
    n_ctx = self.text_prompt.n_ctx if self.text_prompt is not None else 0
    ids = clip_lib.trim_to_eot(self.consts.ids, 2 + n_ctx)
    return clip_lib.l2_normalize(self.encode_text(jnp.asarray(ids), train))

  def __call__(self, images: Array, train: bool = False, text_features: Array | None = None
               ) -> tuple[Array, dict[str, Array]]:
    k = self.consts
    vis = self.encode_image(images, train)
    h = vis['tokens']
    n = (self.image_size // self.patch_size) ** 2
    g = h[:, 0]
    x = h[:, 1:1 + n] + self.visual_prompt.token_bias.astype(h.dtype)
    f = description_feature(g, x, jnp.asarray(k.desc_feats, h.dtype))
    if text_features is None:
      if self.cache_text and not self.is_initializing():
        text_features = self.text_cache
      else:
        text_features = self.encode_descriptions(train)
    s = jnp.exp(self.logit_scale) * f @ text_features.T.astype(f.dtype)     # [B, M]
    logits = s @ jnp.asarray(class_average(k.owner, k.num_classes), s.dtype)
    out = {'image_feature': f, 'global': g, 'text_features': text_features, 'pre_logits': f,
           'zs_text': jnp.asarray(k.zs_text)}
    if train:
      zs = self.encode_image(images, False, use_prompts=False)['pooled']
      out['zs_image'] = jax.lax.stop_gradient(clip_lib.l2_normalize(zs))
    return logits, out


def build_backbone(config: base.Config, arch: arch_lib.Arch) -> clip_lib.CLIP:
  return clip_lib.CLIP(**arch.constructor_kwargs(), dtype=jnp.dtype(config.model.compute_dtype))


def build_model(config: base.Config, arch: arch_lib.Arch, num_classes: int,
                prepared: Any) -> SAPModel:
  s, k = config.sap, arch.constructor_kwargs()
  if num_classes not in (0, prepared['num_classes']):  # 0: from `prepared` (export.load_tuned)
    raise ValueError(f'the data has {num_classes} classes but the descriptions cover '
                     f'{prepared["num_classes"]}')
  return SAPModel(
      **k, dtype=jnp.dtype(config.model.compute_dtype),
      text_prompt=IVLPTextPrompter(s.n_ctx_text, k['text_width'], s.depth),
      visual_prompt=IVLPVisionPrompter(s.n_ctx_vision, arch.width, s.depth, k['embed_dim']),
      consts=Consts(prepared['ids'], prepared['owner'], prepared['desc_feats'],
                    prepared['zs_text'], prepared['num_classes']),
      cache_text=s.text_prompts == 'frozen')


# ----------------------------------------------------------------------------- prepare


def tokenizer_for(config: base.Config, model: clip_lib.CLIP) -> tok_lib.Tokenizer:
  """CLIP's BPE tokenizer (`config.sap.bpe_path`, else next to the checkpoint) padding to the
  text tower's context length."""
  path = tok_lib.find_vocab(config.sap.bpe_path, config.init.checkpoint)
  return tok_lib.Tokenizer.from_file(path, context_length=model.context_length)


def encode_texts(model: clip_lib.CLIP, params: Any, ids: np.ndarray, batch: int = 256,
                 normalize: bool = True) -> np.ndarray:
  """Frozen (prompt-free) text features [N, E] in jitted batches (the last one padded)."""
  fn = jax.jit(lambda p, t: model.apply({'params': p}, t, use_prompts=False,
                                        method=clip_lib.CLIP.encode_text))
  ids = clip_lib.trim_to_eot(ids)
  out = []
  for start in range(0, len(ids), batch):
    chunk = ids[start:start + batch]
    pad = batch - len(chunk) if len(ids) > batch else 0
    feats = np.asarray(fn(params, np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])))
    out.append(feats[:len(chunk)])
  feats = np.concatenate(out).astype(np.float32)
  return feats / np.linalg.norm(feats, axis=-1, keepdims=True) if normalize else feats


def prepare_classes(config: base.Config, model: clip_lib.CLIP, params: Any,
                    classnames: Sequence[str], tokenizer: tok_lib.Tokenizer | None = None
                    ) -> dict[str, Any]:
  """Description tables and frozen zero-shot features for one class set (base, novel or all)."""
  s = config.sap
  tokenizer = tokenizer or tokenizer_for(config, model)
  raw, texts, owner = description_table(classnames, load_descriptions(s.descriptions), s.template,
                                        s.max_descriptions)
  ids = tokenizer.tokenize(texts)
  raw_ids = tokenizer.tokenize(raw)
  return {
      'classnames': list(classnames), 'num_classes': len(classnames), 'texts': texts,
      'ids': ids, 'owner': owner,
      'desc_feats': encode_texts(model, params, raw_ids, s.encode_batch, s.normalize_desc),
      'zs_text': encode_texts(model, params, ids, s.encode_batch, True),
      'ctx_ids': tokenizer.tokenize(s.ctx_init)[0, 1:1 + s.n_ctx_text],
  }


def source_classnames(source: Any, config: base.Config) -> list[str]:
  names = getattr(source, 'classnames', None) or list(config.sap.classnames)
  if len(names) != source.num_classes:
    raise ValueError(f'need {source.num_classes} class names (from the data source or '
                     f'config.sap.classnames), got {len(names)}')
  return list(names)


def prepare(ctx: base.PrepareContext) -> dict[str, Any]:
  return prepare_classes(ctx.config, ctx.backbone, ctx.backbone_params,
                         source_classnames(ctx.source, ctx.config))


def init_params(params: Any, prepared: Any, config: base.Config) -> Any:
  """Text ctx <- token embeddings of `ctx_init`; with frozen text prompts (then config.train.frozen
  must hold r'^text_prompt/'), fill the text cache 'text_cache' [M, E]."""
  params = jax.tree_util.tree_map(lambda x: x, params)  # shallow copy of the nesting
  table = params['text']['token_embedding']['embedding']
  if config.sap.ctx_init:
    params['text_prompt']['ctx'] = jnp.asarray(table)[jnp.asarray(prepared['ctx_ids'])]
  if config.sap.text_prompts == 'frozen':
    if not any(re.search(r, 'text_prompt/ctx') for r in config.train.frozen):
      raise ValueError("sap.text_prompts='frozen' needs config.train.frozen = "
                       "(r'^text_prompt/', r'^text_cache') so weight decay leaves them unchanged")
    model = build_model(config, SAP.arch(config), prepared['num_classes'], prepared)
    encode = jax.jit(lambda p: model.apply({'params': p}, method=SAPModel.encode_descriptions))
    params['text_cache'] = encode(params)
  return params


# ----------------------------------------------------------------------------- loss


def loss(inputs: base.LossInputs) -> tuple[Array, dict[str, Array]]:
  ce, _ = base.cross_entropy_loss(inputs)
  out, s, mask = inputs.out, inputs.config.sap, inputs.batch['mask']
  text_l1 = jnp.mean(jnp.abs(out['zs_text'] - out['text_features']))
  g = clip_lib.l2_normalize(out['global'])
  image_l1 = base.masked_mean(jnp.mean(jnp.abs(out['zs_image'] - g), axis=-1), mask)
  total = ce + s.text_weight * text_l1 + s.image_weight * image_l1
  return total, {'ce': ce, 'text_l1': text_l1, 'image_l1': image_l1}


# ----------------------------------------------------------------------------- config


def check(c: base.Config) -> list[str]:
  """`config.sap`: counts >= 1, text_prompts 'train' | 'frozen'."""
  out = [p for key in ('n_ctx_text', 'n_ctx_vision', 'depth', 'encode_batch')
         for p in checks.at_least(f'sap.{key}', c.sap[key], 1)]
  return out + checks.one_of('sap.text_prompts', c.sap.text_prompts, ('train', 'frozen'))


def section(**over: Any) -> ConfigDict:
  """`config.sap` (docs/specs/04-spt-sap.md; IVLP 4+4 tokens, depth 9, weights 25 / 10)."""
  c = ConfigDict(dict(
      n_ctx_text=4, n_ctx_vision=4,  # prompt tokens per text / vision layer
      depth=9,                 # layers with prompts
      ctx_init='a photo of a',  # text prompts start as these words' embeddings
      text_prompts='train',    # 'train' | 'frozen' (cached text features)
      descriptions='',         # JSON {class name: [description, ...]}
      bpe_path='',             # bpe_simple_vocab_16e6.txt.gz (default: next to init.checkpoint)
      # {which}: 'which' when the description starts with 'is'/'has', else 'which has'
      template='a photo of a {classname}, {which} {description}.',
      zs_template='a photo of a {classname}.',  # zero-shot CLIP's text
      normalize_desc=False,    # L2-normalise the description features (the release does not)
      text_weight=25.0, image_weight=10.0,  # L1 alignment weights, text and image
      max_descriptions=-1,     # descriptions kept per class (-1: all)
      encode_batch=256,        # texts per text-encoder batch
      classnames=()))          # used when the data source has no class names
  c.update(over)
  return c


SAP = base.register(base.Method(
    name='sap',
    model=base.ModelParts(family='clip', build_model=build_model, build_backbone=build_backbone,
                          init_params=init_params),
    recipe=base.Recipe(
        prepare=prepare, loss=loss,
        trainable=(r'^visual_prompt/', r'^text_prompt/'), frozen=(r'^text_cache',),
        prepare_keys=base.FEATURE_KEYS + ('sap.bpe_path', 'sap.template', 'sap.max_descriptions',
                                          'sap.normalize_desc', 'sap.encode_batch',
                                          'sap.ctx_init', 'sap.n_ctx_text', 'sap.classnames'),
        prepare_files=('sap.descriptions',)),
    evaluation=base.Evaluation(open_vocabulary=True),
    config_section='sap', section=section, check=check,
    machine_keys=('sap.descriptions', 'sap.bpe_path')))


def harmonic_mean(base_acc: float, novel_acc: float) -> float:
  """2ab/(a+b) (0 when both are 0)."""
  return 0.0 if base_acc + novel_acc == 0 else 2 * base_acc * novel_acc / (base_acc + novel_acc)


__all__ = ['SAPModel', 'description_feature', 'harmonic_mean', 'prepare_classes',
           'fewshot']
