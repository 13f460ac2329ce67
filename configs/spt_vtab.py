"""SPT (VPT layout, prompts initialised with token prototypes) on one VTAB-1k task,
docs/specs/04-spt-sap.md.

  python -m prompt_jax.main --config=configs/spt_vtab.py:task=dtd,backbone=mae \
      --workdir=/tmp/spt --config.init.checkpoint=/path/mae_pretrain_vit_base.pth
  ... --config=configs/spt_vtab.py:task=dtd,deep=False        # SPT-shallow (P = 100)

`backbone` in sup21k | mae | mocov3 (BACKBONES). Method 'spt' applies its own init
(prompt_init.name stays 'default'); --config.prompt_init.strategy=random|mean_pooling|max_pooling|
kmeans. AdamW, 100 epochs, 10 warm-up epochs from 0, then cosine over the 90 post-warm-up epochs
down to 1e-8, set every update (the release's utils.py `adjust_learning_rate` at the fractional
epoch step/steps_per_epoch + epoch, called per step from train_MAE.py), batch 32 (full batches
only: the release's drop_last=True), drop path 0.1, head timm trunc_normal_(std=.02) (MoCo .01;
model.head_init='normal': cut-offs ±2 absolute), wd groups. P: 20 deep, 100 shallow. The release's
VTAB transform: shorter side to 224 (bicubic, PIL-like antialiasing), centre crop 224.
"""

from prompt_jax.configs import common

BACKBONES = {
    'sup21k': dict(format='npz', pool='cls', head_std=0.02),
    'mae': dict(format='mae', pool='mean_norm', head_std=0.02),  # norm(mean(x[:,1:])) incl. prompts
    'mocov3': dict(format='mocov3', pool='cls', head_std=0.01),
}


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100', backbone='mae', deep=True)
  if a.backbone not in BACKBONES:
    raise ValueError(f'unknown backbone {a.backbone!r}; known: {sorted(BACKBONES)}')
  b = BACKBONES[a.backbone]
  c = common.base()
  c.method = 'spt'
  c.data.task = a.task
  c.init.format = b['format']
  c.model.update(pool=b['pool'], drop_path=0.1, head_init='normal',
                 head_init_std=b['head_std'], head_bias_init=0.0)
  c.data.update(normalization='imagenet', resize='bicubic', resize_to='shorter_side',
                antialias=True, augment=False)
  c.vpt = common.vpt(num_prompts=20 if a.deep else 100, deep=a.deep, dropout=0.0)
  c.prompt_init.update(strategy='kmeans', fraction=0.3, seed=0)
  c.train.update(optimizer='adamw', lr=1e-3, lr_scale_by_batch=False, batch_size=32, epochs=100,
                 warmup_epochs=10, warmup_init=0.0, min_lr=1e-8, schedule_per='step',
                 cosine_shift=True, wd=1e-4, wd_head=1e-4, drop_last=True)
  return common.finalize(c)
