"""Fields shared by every config. Method configs call `base()` and add their own section.

`finalize(config)` locks the dict, so an unknown key (in a file or a `--config.x=y` override) is an
error instead of being silently dropped.
"""

import math

import ml_collections

VTAB_TASKS = (
    'caltech101', 'cifar100', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397',
    'patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy',
    'clevr_count', 'clevr_dist', 'dmlab', 'kitti', 'dsprites_loc', 'dsprites_ori',
    'smallnorb_azi', 'smallnorb_ele')


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.program = 'train'  # prompt_jax.main.PROGRAMS: 'train', 'demo', ...
  c.method = 'vpt'
  c.seed = 0

  c.model = ml_collections.ConfigDict(dict(
      variant='B/16', drop_path=0.0, act='gelu', ln_eps=1e-6, pool='cls',
      head_init='kaiming_fan_out', head_init_std=0.02, head_bias_init=-math.log(99.0),
      compute_dtype='float32'))

  # Backbone weights. format: npz (original ViT / augreg), timm, mae, mocov3 (see checkpoints/).
  c.init = ml_collections.ConfigDict(dict(checkpoint='', format='npz', posemb_resize='linear'))

  c.data = ml_collections.ConfigDict(dict(
      source='vtab', task='cifar100', data_dir=ml_collections.FieldReference(None, field_type=str),
      image_size=224, resize='bilinear', crop_pct=1.0, normalization='minus_one_to_one',
      train_split='train800val200', eval_splits=('test',), val_split='',
      augment=False, sampler='shuffle', images_per_class=2, cache_train=True,
      # source='folder': 'vtab1k' (<data_dir>/<task>/<split>.txt) or 'fgvc' (VPT json splits);
      # image_root: FGVC image folder under data_dir (None: the task's default).
      layout='vtab1k', image_root=ml_collections.FieldReference(None, field_type=str)))

  c.train = ml_collections.ConfigDict(dict(
      epochs=100, batch_size=128, eval_batch_size=256, optimizer='sgd', lr=0.1,
      lr_scale_by_batch=True, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8,
      wd=1e-4, wd_head=-1.0, warmup_epochs=10, warmup_init=0.0, min_lr=0.0,
      schedule_per='epoch', cosine_shift=True, grad_clip_norm=0.0, grad_clip_value=0.0,
      trainable=(), frozen=(), eval_every_epochs=10, checkpoint_every_steps=200,
      keep_checkpoints=2, log_every_steps=20, max_steps=-1, export=True))

  # Devices: data-parallel mesh; `fsdp` > 1 shards the frozen backbone over that many devices.
  c.mesh = ml_collections.ConfigDict(dict(fsdp=1, distributed=False))

  c.prompt_init = ml_collections.ConfigDict(dict(name='default'))
  return c


def vpt_section(num_prompts: int = 50, deep: bool = True, dropout: float = 0.1
                ) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(num_prompts=num_prompts, deep=deep, dropout=dropout,
                                        project_dim=0))


def finalize(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.lock()
  return c
