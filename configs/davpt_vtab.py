"""DA-VPT on one VTAB-1k task, spec 03 recipe (MAE / MoCo v3 / supervised ViT-B/16).

  python -m prompt_jax.main --config=configs/davpt_vtab.py:mae --workdir=/tmp/davpt \
      --config.data.task=dtd --config.init.checkpoint=/path/mae_pretrain_vit_base.pth

arg: 'BACKBONE' or 'BACKBONE,EXTRA' with BACKBONE in sup21k | mae | mocov3 and EXTRA any of
'k_bias', 'norm1', 'cls' (extra trainable params), 'mask' (prompt queries see image tokens only),
separated by '+', e.g. 'mocov3,k_bias+mask'.
AdamW, 100 epochs, 10 warm-up epochs from 1e-8, cosine per update not shifted by the warm-up (min
1e-9), batch 32 from a class-balanced sampler (2 images/class), grad value clip 10, wd on prompts+cls,
wd_head on the head kernel, none on 1-D params. ImageNet normalisation, 224 bicubic, no augmentation.
Typical: nP 5, P 10, proxy layer 11, λ 0.01/0.01, r 5, remap from epoch 10, drop path 0.1;
per-task lr/wd/wd_head vary (1e-4..1e-2 / 0..10 / 0..20): sweep with --config.train.lr etc.
"""

from configs import common
from prompt_jax.methods import davpt

BACKBONES = {  # init.format, model.pool
    'sup21k': ('npz', 'cls'),
    'mae': ('mae', 'norm_mean'),   # final LN, then mean of x[:,1:] including last-layer prompts
    'mocov3': ('mocov3', 'cls'),
}
EXTRAS = {'k_bias': davpt.TRAIN_K_BIAS, 'norm1': davpt.TRAIN_NORM1, 'cls': davpt.TRAIN_CLS}


def davpt_config(arg: str):
  backbone, _, extra = arg.partition(',')
  if backbone not in BACKBONES:
    raise ValueError(f'unknown backbone {backbone!r}; known: {sorted(BACKBONES)}')
  extras = [e for e in extra.split('+') if e]
  c = common.base()
  c.method = 'davpt'
  fmt, pool = BACKBONES[backbone]
  c.init.format = fmt
  c.model.update(pool=pool, drop_path=0.1, head_init='trunc_normal', head_init_std=0.02,
                 head_bias_init=0.0)
  c.data.update(normalization='imagenet', resize='bicubic', crop_pct=0.875, augment=False,
                sampler='class_balanced', images_per_class=2)
  trainable = list(davpt.TRAINABLE)
  for e in extras:
    if e == 'mask':
      continue
    if e not in EXTRAS:
      raise ValueError(f'unknown DA-VPT extra {e!r}; known: {sorted(EXTRAS)} and mask')
    trainable += list(EXTRAS[e])
  c.davpt = davpt.section(mask_prompts='mask' in extras)
  c.train.update(optimizer='adamw', lr=1e-3, lr_scale_by_batch=False, batch_size=32, epochs=100,
                 warmup_epochs=10, warmup_init=1e-8, min_lr=1e-9, schedule_per='step',
                 cosine_shift=False, grad_clip_value=10.0, wd=1e-4, wd_head=1e-4,
                 trainable=tuple(trainable))
  return c


def get_config(arg: str = 'mae'):
  return common.finalize(davpt_config(arg))
