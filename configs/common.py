"""Every config key, declared once with its default. Config files call `base()`, add the section of
their method (`Method.section`: the built-in ones are here, `vpt()`, `ship()`, `davpt()`, `sap()`;
a method outside this file defines its own next to its `register` call) and change values;
nothing else adds keys. Code that may meet a hand-built partial section reads a default with
`field(cfg, 'data.augment')`, never a default of its own.

`finalize(config)` locks the dict, so an unknown key (in a file or a `--config.x=y` override) is an
error instead of being silently dropped. Config files are data: they import this module (and the
light task metadata it uses), never the library's models or methods.

Config arguments (`--config=configs/ship_vtab.py:ARG`) are `key=value` pairs separated by commas
(`parse_arg`); a bare first token is the task: `ship_vtab.py:cifar100` is
`ship_vtab.py:task=cifar100`.
Every VTAB config accepts `task=`: a config with a per-task recipe table (SHIP) applies that task's
row, and records it in `recipe_task` so that a different `--config.data.task` is an error.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import ml_collections

from prompt_jax.data import tasks

ConfigDict = ml_collections.ConfigDict

DEFAULT_METHOD = 'vpt'  # config.method and the Python API's default


def _opt_str(default: str | None = None) -> ml_collections.FieldReference:
  return ml_collections.FieldReference(default, field_type=str)


def base() -> ConfigDict:
  """The fields every config has."""
  c = ConfigDict()
  c.program = 'train'   # prompt_jax.main.PROGRAMS: train, evaluate, demo, b2n, clip_zeroshot
  c.method = DEFAULT_METHOD  # a registered method (prompt_jax.methods.base.METHODS.names())
  c.seed = 0            # seeds the inits, data order, dropout, augmentation and clustering
  c.recipe_task = ''    # the task whose per-task recipe row this config holds ('' = none)

  c.model = ConfigDict(dict(
      variant='B/16',             # ViT: Mu/Ti/S/B/L/H + '/patch'; CLIP (sap): B/32, B/16, L/14
      drop_path=0.0,              # linear over depth; backbone dropout is always off
      act='gelu',                 # 'gelu' (exact erf, the PyTorch seeds), 'gelu_tanh', 'quick_gelu'
      ln_eps=1e-6,                # LayerNorm epsilon
      pool='cls',                 # 'cls'; MAE heads: 'norm_mean' (DA-VPT), 'mean_norm' (SPT/timm)
      # 'kaiming_fan_out' (VPT), 'normal' (N(0, std): timm's trunc_normal_(std=.02), whose ±2
      # cut-offs are absolute), 'trunc_normal' (flax: cut at ±2·std, so std·0.88), 'zeros'
      head_init='kaiming_fan_out',
      head_init_std=0.02,         # std of the 'normal' / 'trunc_normal' head inits
      head_bias_init=-math.log(99.0),  # head bias (VPT: -log 99)
      compute_dtype='float32',    # 'float32' or 'bfloat16'
      # Prompt tokens whose block output nothing reads are key/value-only in that block (no query,
      # output projection, residual or MLP): exact, and faster. False: every token is computed in
      # every block, as the releases do (models/prompter.py).
      live_tokens=True,
      attention='auto',           # 'auto' | 'einsum' | 'fused' (models/attention.py)
      remat=False))               # recompute MLP hidden + attention weights in backward (vit.py)

  # Backbone weights: checkpoint path (local or gs://; 'random' = a seeded random init on purpose;
  # empty is an error), format npz | timm | mae | mocov3 | clip_openai | clip_hf,
  # position-embedding resize 'linear' (original) | 'bicubic' (timm).
  c.init = ConfigDict(dict(
      checkpoint='',              # weights path (local or gs://), or 'random'
      format='npz',               # npz | timm | mae | mocov3 | clip_openai | clip_hf
      posemb_resize='linear'))    # position-embedding resize: 'linear' | 'bicubic'

  c.data = ConfigDict(dict(
      source='vtab',              # vtab | folder | fewshot | digits
      task='cifar100',            # the task name (data/tasks.py for VTAB-1k)
      data_dir=_opt_str(),        # TFDS data_dir / image folder root (None: TFDS default)
      tfds_version=_opt_str(),    # override the pinned TFDS version, e.g. '3.2.0'
      image_size=224,             # model input side, a multiple of the patch size
      resize='bilinear',          # 'bilinear' | 'bicubic'
      crop_pct=1.0,               # < 1: resize to size/crop_pct, then centre-crop `image_size`
      resize_to='square',         # 'square' (aspect not kept) | 'shorter_side' (aspect kept)
      antialias=False,            # True: PIL/torchvision-like downsampling (PyTorch releases)
      normalization='minus_one_to_one',  # minus_one_to_one | half | imagenet | clip | zero_one
      train_split='train800val200',  # train800val200 | train800 | train1000 (official VTAB)
      eval_splits=('test',),      # splits scored at each evaluation
      val_split='',               # the split that selects the epoch for "val-selected" results
      augment=False,              # random-resized-crop + flip (FGVC, SAP)
      sampler='shuffle',          # 'shuffle' | 'class_balanced' (DA-VPT)
      images_per_class=2,         # class_balanced: images of one class per batch
      cache_train=True,           # keep the decoded training split in memory between epochs
      # True: a source that keeps decoded splits (vtab, folder) decodes the training split once,
      # keeps it on the devices (sharded over the data axes) and normalises / augments in the
      # jitted step (only indices cross per step); each eval split is decoded once per run.
      # False: the host path (normalised float32 batches per step). prompt_jax/inputs.py.
      device_cache=True,
      cache_dtype='float32',      # cached pixels: 'float32' (exact) | 'uint8' (4x less memory)
      cache_memory_gb=4.0,        # an eval split larger than this is memmapped to workdir/cache
      layout='vtab1k',            # folder: 'vtab1k' (<data_dir>/<task>/<split>.txt) | 'fgvc'
      image_root=_opt_str(),      # folder/fgvc: image folder under data_dir (None: the task's)
      split_file='',              # fewshot: CoOp split json ('' = TFDS)
      shots=16,                   # fewshot: images per class
      fewshot_seed=1,             # fewshot: which shots
      subset='all'))              # fewshot: 'all' | 'base' | 'novel' classes

  c.train = ConfigDict(dict(
      epochs=100,                 # training epochs over train_split
      batch_size=128,             # global batch, split over all devices
      eval_batch_size=256,        # global batch at evaluation
      optimizer='sgd',            # 'sgd' (coupled L2, torch.optim.SGD) | 'adamw' (decoupled)
      lr=0.1, lr_scale_by_batch=True,  # peak lr = lr·batch/256 when scaled (VPT)
      momentum=0.9,               # sgd
      b1=0.9, b2=0.999, eps=1e-8,  # adamw
      wd=1e-4,                    # weight decay
      wd_head=-1.0,               # wd_head < 0: = wd; biases and 1-D params decay only with
      decay_1d=False,             # decay_1d=True (Dassl's SGD decays every trainable tensor: SAP)
      warmup_epochs=10,           # linear warm-up from warmup_init to the peak lr
      warmup_init=0.0,            # the lr warm-up starts from
      min_lr=0.0,                 # the cosine's floor
      schedule_per='epoch',       # 'epoch' (VPT, SHIP) | 'step' (DA-VPT, SPT)
      cosine_shift=True,          # cosine over the post-warm-up span (VPT) or absolute (timm)
      warmup_recount=False,       # cosine over all epochs from the end of warm-up (Dassl: SAP)
      schedule_lag_epochs=0,      # epoch e trains at lr(e - lag) (1: SHIP's timm stepping)
      grad_clip_norm=0.0,         # clip the global gradient norm (0: off)
      grad_clip_value=0.0,        # clip each gradient value to +-this (0: off)
      trainable=(), frozen=(),    # regexes over param paths; override the method's when non-empty
      eval_every_epochs=10,       # evaluate every N epochs and after the last
      checkpoint_every_steps=200,  # also at every evaluation
      keep_checkpoints=2,         # newest checkpoint steps kept
      log_every_steps=20,         # train scalars and finite checks every N steps
      max_steps=-1,               # stop after N steps (-1: epochs decide)
      export=True,                # write workdir/tuned at the end
      drop_last=False,            # False: the last partial batch trains, padded + masked (VPT)
      # Continue a workdir whose recorded run (run.json) has another config or backbone, or that
      # stopped on a non-finite step under this config (prompt_jax/workdir.py).
      allow_config_change=False))

  # Devices: data-parallel mesh; `fsdp` > 1 shards the frozen backbone over that many devices.
  c.mesh = ConfigDict(dict(
      fsdp=1,                     # devices the frozen backbone is sharded over
      distributed=False))         # call jax.distributed.initialize() (multi-host)

  # program='evaluate': score data.eval_splits from an export (prompt_jax/predict.py) on
  # init.checkpoint. `tuned`: a run's tuned/ folder or a release-named .safetensors ('' = this
  # run's own --workdir/tuned); `allow_other_backbone`: score even if the backbone digest differs.
  # Writes --workdir/evaluate.json.
  c.evaluate = ConfigDict(dict(
      tuned='',                   # export to score ('' = --workdir/tuned)
      allow_other_backbone=False))  # score even if the backbone digest differs

  # Prompt initialiser for any prompt method: 'default' (the method's own) or 'spt' (prototypes of
  # the downstream tokens; strategy random | mean_pooling | max_pooling | kmeans; `fraction` of the
  # training images; seeded; features extracted `batch_size` images at a time).
  # `last_window` (pooling strategies): 'release' (the last N_p % w tokens, all when that is 0)
  # or 'remainder' (the tokens after the P-1 windows).
  c.prompt_init = ConfigDict(dict(
      name='default',             # 'default' (the method's own) | 'spt' (prototypes)
      strategy='kmeans',          # random | mean_pooling | max_pooling | kmeans
      fraction=0.3,               # of the training images
      seed=0,                     # seeds the sampled images and k-means
      batch_size=64,              # images per feature-extraction batch
      last_window='release'))     # 'release' | 'remainder'
  return c


def vpt(num_prompts: int = 50, deep: bool = True, dropout: float = 0.1,
        project_dim: int = 0) -> ConfigDict:
  """`config.vpt` (VPT and SPT): prompt count, deep/shallow, prompt dropout, optional projection."""
  return ConfigDict(dict(num_prompts=num_prompts,  # prompt tokens P (per block when deep)
                         deep=deep,                # prompts in every block, else the first only
                         dropout=dropout,          # prompt dropout, one mask per example
                         project_dim=project_dim))  # > 0: prompts in this dim, projected to D


def ship(**over: Any) -> ConfigDict:
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


def davpt(**over: Any) -> ConfigDict:
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


def sap(**over: Any) -> ConfigDict:
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


# ------------------------------------------------------------------------- PETL baselines
# The sections of methods/lora.py, adapter.py, prefix.py (BitFit has none), and the recipe their
# release (NOAH, which SHIP forks) trains them with. `dim`: every block (its SUPERNET.*_DIM);
# `dims`: one per block (its RETRAIN.*_DIM list; empty = `dim` everywhere).


def lora(**over: Any) -> ConfigDict:
  """`config.lora`: rank 8 in every block, dropout 0.1, fused qkv (NOAH's ViT-B_prompt_lora_8)."""
  c = ConfigDict(dict(dim=8,                              # rank in every block
                      dims=(),                            # rank per block (0: none there)
                      dropout=0.1,                        # on the input of A
                      scale=1.0,                          # the update's scale (peft: alpha/r)
                      layout='fused',                     # 'fused' (release) | 'separate' (peft)
                      targets=('query', 'key', 'value')))  # separate layout only
  c.update(over)
  return c


def adapter(**over: Any) -> ConfigDict:
  """`config.adapter`: bottleneck 8 in every block after the MLP, QuickGELU, dropout 0.1."""
  c = ConfigDict(dict(dim=8,                              # bottleneck width in every block
                      dims=(),                            # width per block (0: none there)
                      dropout=0.1,                        # after the activation
                      act='quick_gelu',                   # the bottleneck's activation
                      positions=('mlp',)))                # ('attn', 'mlp'): Houlsby's two
  c.update(over)
  return c


def prefix(**over: Any) -> ConfigDict:
  """`config.prefix`: 10 key/value prefix tokens per block (no released value), no dropout."""
  c = ConfigDict(dict(dim=10,         # key / value prefix tokens in every block
                      dims=(),        # tokens per block (0: none there)
                      dropout=0.0))   # on the prefix tokens
  c.update(over)
  return c


def petl_recipe(c: ConfigDict, task: str) -> None:
  """NOAH's VTAB scripts for LoRA / Adapter: AdamW lr 1e-3, wd 1e-4, batch 64, 100 epochs, 10
  warm-up epochs from 1e-6, cosine to 1e-5 per epoch (timm), drop path 0.1, full batches only,
  `--direct_resize` (bicubic to 224, no crop), ImageNet mean / std (no `--inception`), head
  N(0, .02) with zero bias (its `reset_classifier`), no augmentation."""
  c.data.task = task
  c.model.update(drop_path=0.1, head_init='normal', head_init_std=0.02, head_bias_init=0.0)
  c.data.update(normalization='imagenet', resize='bicubic', crop_pct=1.0, antialias=True)
  c.train.update(optimizer='adamw', eps=1e-8, batch_size=64, lr=1e-3, wd=1e-4,
                 lr_scale_by_batch=False, epochs=100, warmup_epochs=10, warmup_init=1e-6,
                 min_lr=1e-5, schedule_per='epoch', cosine_shift=False, drop_last=True)
# ------------------------------------------------------------------ end of PETL baselines


def b2n(eval_split: str = 'test') -> ConfigDict:
  """`config.b2n`: the split on which base and novel classes are scored."""
  return ConfigDict(dict(eval_split=eval_split))  # split scored on base and novel classes


def demo(**over: Any) -> ConfigDict:
  """`config.demo`: the offline digits demo's pretraining and runs."""
  c = ConfigDict(dict(pretrain_epochs=40, pretrain_lr=2e-3,  # the micro ViT's pretraining
                      runs=('linear', 'vpt_shallow', 'vpt_deep')))  # tuned runs, in order
  c.update(over)
  return c


def _parse_value(text: str, default: Any) -> Any:
  if isinstance(default, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(f'expected a boolean, got {text!r}')
    return text.lower() in ('true', '1')
  if default is None or isinstance(default, str):
    return text
  return type(default)(text)


def parse_arg(arg: str | None, **fields: Any) -> ConfigDict:
  """'cifar100,backbone=mae' -> ConfigDict(task='cifar100', backbone='mae', ...other defaults).

  `fields` declares the accepted keys with their defaults (and types); a bare first token sets the
  first field. Unknown keys are an error listing the known ones.
  """
  out = dict(fields)
  names = list(fields)
  for i, token in enumerate(t.strip() for t in (arg or '').split(',')):
    if not token:
      continue
    key, eq, value = token.partition('=')
    if not eq:
      if i or not names:
        raise ValueError(f'config argument {token!r}: write key=value (known keys: {names})')
      key, value = names[0], token
    if key not in fields:
      raise ValueError(f'unknown config argument {key!r}; known: {names}')
    out[key] = _parse_value(value, fields[key])
  return ConfigDict(out)


def apply_recipe(c: ConfigDict, task: str, table: dict[str, dict[str, Any]]) -> None:
  """Sets data.task and `c.recipe_task`, and writes the task's row of `table` ({task: {dotted
  key: value}}) into the config. A task without a row is an error listing those with one."""
  task = tasks.canonical_task(task)
  if task not in table:
    raise ValueError(f'no recipe for task {task!r}; this config has recipes for {sorted(table)}')
  c.data.task = task
  c.recipe_task = task
  for dotted, value in table[task].items():
    set_field(c, dotted, value, what='recipe key')


def set_field(c: ConfigDict, dotted: str, value: Any, what: str = 'config field') -> None:
  """c['a']['b'] = value for dotted 'a.b'; a field the config does not declare is a KeyError."""
  node = c
  *parents, leaf = dotted.split('.')
  for p in parents:
    if p not in node:
      raise KeyError(f'unknown {what} {dotted!r}')
    node = node[p]
  if leaf not in node:
    raise KeyError(f'unknown {what} {dotted!r}')
  node[leaf] = value


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
  return base().to_dict()


def field(cfg: Any, dotted: str) -> Any:
  """`cfg[leaf]` of a config section (e.g. config.data for dotted 'data.augment'), or, where a
  partial section built by hand lacks it, the default declared in `base()` (declared once)."""
  leaf = dotted.rsplit('.', 1)[-1]
  if leaf in cfg:
    return cfg[leaf]
  node = _defaults()
  for part in dotted.split('.'):
    node = node[part]
  return node


def finalize(c: ConfigDict) -> ConfigDict:
  c.lock()
  return c
