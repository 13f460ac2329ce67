"""The config schema: every key of `base()` declared once with its default, and the helpers that
read and write configs. A method's own section (`config.vpt`, `config.ship`, ...) is declared in the
method's file (`section()`), the demo's and base-to-novel's in theirs. Config files (configs/*.py)
import these; the library never imports configs/.

`finalize(config)` locks the dict, so an unknown key (in a file or a `--config.x=y` override) is an
error instead of being silently dropped. Code that may meet a hand-built partial section reads a
default with `field(cfg, 'data.augment')`, never a default of its own.

Config arguments (`--config=configs/ship_vtab.py:ARG`) are `key=value` pairs separated by commas
(`parse_arg`); a bare first token is the first declared field: `ship_vtab.py:cifar100` is
`ship_vtab.py:task=cifar100`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import ml_collections


ConfigDict = ml_collections.ConfigDict

DEFAULT_METHOD = 'vpt'  # config.method and the Python API's default


def _opt_str(default: str | None = None) -> ml_collections.FieldReference:
  return ml_collections.FieldReference(default, field_type=str)


def model_section() -> ConfigDict:
  """`config.model`."""
  return ConfigDict(dict(
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


def init_section() -> ConfigDict:
  """`config.init`."""
  # Backbone weights: checkpoint path (local or gs://; 'random' = a seeded random init on purpose;
  # empty is an error), format npz | timm | mae | mocov3 | clip_openai | clip_hf,
  # position-embedding resize 'linear' (original) | 'bicubic' (timm).
  return ConfigDict(dict(
      checkpoint='',              # weights path (local or gs://), or 'random'
      format='npz',               # npz | timm | mae | mocov3 | clip_openai | clip_hf
      posemb_resize='linear'))    # position-embedding resize: 'linear' | 'bicubic'


def data_section() -> ConfigDict:
  """`config.data`."""
  return ConfigDict(dict(
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
      # False: the host path (normalised float32 batches per step). prompt_jax/train/inputs.py.
      device_cache=True,
      cache_dtype='float32',      # cached pixels: 'float32' (exact) | 'uint8' (4x less memory)
      cache_memory_gb=4.0,        # an eval split larger than this is memmapped to workdir/cache
      layout='vtab1k',            # folder: 'vtab1k' (<data_dir>/<task>/<split>.txt) | 'fgvc'
      image_root=_opt_str(),      # folder/fgvc: image folder under data_dir (None: the task's)
      split_file='',              # fewshot: CoOp split json ('' = TFDS)
      shots=16,                   # fewshot: images per class
      fewshot_seed=1,             # fewshot: which shots
      subset='all'))              # fewshot: 'all' | 'base' | 'novel' classes


def train_section() -> ConfigDict:
  """`config.train`."""
  return ConfigDict(dict(
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
      # Continue a workdir whose recorded run (run.json) has another config, or that stopped on a
      # non-finite step under this config; never another backbone (prompt_jax/train/workdir.py).
      allow_config_change=False))


def mesh_section() -> ConfigDict:
  """`config.mesh`."""
  # Devices: data-parallel mesh; `fsdp` > 1 shards the frozen backbone over that many devices.
  return ConfigDict(dict(
      fsdp=1,                     # devices the frozen backbone is sharded over
      distributed=False))         # call jax.distributed.initialize() (multi-host)


def evaluate_section() -> ConfigDict:
  """`config.evaluate`."""
  # program='evaluate': score data.eval_splits from an export (prompt_jax/export/predict.py) on
  # init.checkpoint. `tuned`: a run's tuned/ folder or a release-named .safetensors ('' = this
  # run's own --workdir/tuned); `allow_other_backbone`: score even if the backbone digest differs.
  # Writes --workdir/evaluate.json.
  return ConfigDict(dict(
      tuned='',                   # export to score ('' = --workdir/tuned)
      allow_other_backbone=False))  # score even if the backbone digest differs


def prompt_init_section() -> ConfigDict:
  """`config.prompt_init`."""
  # Prompt initialiser for any prompt method: 'default' (the method's own) or 'spt' (prototypes of
  # the downstream tokens; strategy random | mean_pooling | max_pooling | kmeans; `fraction` of the
  # training images; seeded; features extracted `batch_size` images at a time).
  # `last_window` (pooling strategies): 'release' (the last N_p % w tokens, all when that is 0)
  # or 'remainder' (the tokens after the P-1 windows).
  return ConfigDict(dict(
      name='default',             # 'default' (the method's own) | 'spt' (prototypes)
      strategy='kmeans',          # random | mean_pooling | max_pooling | kmeans
      fraction=0.3,               # of the training images
      seed=0,                     # seeds the sampled images and k-means
      batch_size=64,              # images per feature-extraction batch
      last_window='release'))     # 'release' | 'remainder'


def base() -> ConfigDict:
  """The fields every config has."""
  c = ConfigDict()
  c.program = 'train'   # prompt_jax.main.PROGRAMS: train, evaluate, demo, b2n, clip_zeroshot
  c.method = DEFAULT_METHOD  # a registered method (prompt_jax.methods.base.METHODS.names())
  c.seed = 0            # seeds the inits, data order, dropout, augmentation and clustering
  c.recipe_task = ''    # the task whose per-task recipe row this config holds ('' = none)
  c.model = model_section()
  c.init = init_section()
  c.data = data_section()
  c.train = train_section()
  c.mesh = mesh_section()
  c.evaluate = evaluate_section()
  c.prompt_init = prompt_init_section()
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


def flatten(section: Any, prefix: str = '') -> dict[str, Any]:
  """{'method': 'vpt', 'vpt': {'deep': False}} -> {'method': 'vpt', 'vpt.deep': False}."""
  out = {}
  for key, value in dict(section).items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def finalize(c: ConfigDict) -> ConfigDict:
  c.lock()
  return c
