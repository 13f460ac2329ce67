"""DA-VPT on one VTAB-1k task, docs/specs/03-davpt.md recipe (MAE / MoCo v3 / supervised ViT-B/16).

  python -m prompt_jax.main --config=configs/davpt_vtab.py:task=dtd,backbone=mae \
      --workdir=/tmp/davpt --config.init.checkpoint=/path/mae_pretrain_vit_base.pth

`backbone` in sup21k | mae | mocov3 (BACKBONES: checkpoint format and pooling). Extra trainable
params and the prompt mask are config fields: --config.davpt.train_k_bias=True, train_norm1,
train_cls, mask_prompts (prompt queries see image tokens only).
AdamW, 100 epochs, 10 warm-up epochs from 1e-8, cosine per update not shifted by the warm-up (min
1e-9), batch 32 from a class-balanced sampler (2 images/class, classes repeated within a batch when
the split has fewer than 16; len // 32 full batches per epoch, as the release's ClassSampler), grad
value clip 10, wd on prompts+cls, wd_head on the head kernel, none on 1-D params. ImageNet
normalisation; the release's VTAB transform: shorter side to 224 (bicubic, aspect kept,
PIL-like antialiasing), centre crop 224; no augmentation. Prompts enter the blocks un-normed
(the release's VTAB configs: vpt_norm none).
Typical: nP 5, P 10, proxy layer 11, λ 0.01/0.01, r 5, remap from epoch 10, drop path 0.1;
per-task lr/wd/wd_head vary (1e-4..1e-2 / 0..10 / 0..20): sweep with --config.train.lr etc.
"""

from prompt_jax.configs import common

BACKBONES = {
    'sup21k': dict(format='npz', pool='cls'),
    'mae': dict(format='mae', pool='norm_mean'),  # final LN, then mean of x[:,1:] incl. prompts
    'mocov3': dict(format='mocov3', pool='cls'),
}


def davpt_config(task: str, backbone: str) -> common.ConfigDict:
  """The unlocked DA-VPT config (shared with configs/davpt_fgvc.py)."""
  if backbone not in BACKBONES:
    raise ValueError(f'unknown backbone {backbone!r}; known: {sorted(BACKBONES)}')
  b = BACKBONES[backbone]
  c = common.base()
  c.method = 'davpt'
  c.init.format = b['format']
  c.model.update(pool=b['pool'], drop_path=0.1, head_init='trunc_normal', head_init_std=0.02,
                 head_bias_init=0.0)
  c.data.update(task=task, normalization='imagenet', resize='bicubic', resize_to='shorter_side',
                crop_pct=1.0, antialias=True, augment=False, sampler='class_balanced',
                images_per_class=2)
  c.davpt = common.davpt()
  c.train.update(optimizer='adamw', lr=1e-3, lr_scale_by_batch=False, batch_size=32, epochs=100,
                 warmup_epochs=10, warmup_init=1e-8, min_lr=1e-9, schedule_per='step',
                 cosine_shift=False, grad_clip_value=10.0, wd=1e-4, wd_head=1e-4, drop_last=True)
  return c


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100', backbone='mae')
  return common.finalize(davpt_config(a.task, a.backbone))
