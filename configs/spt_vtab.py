"""SPT (VPT layout, prompts initialised with token prototypes) on one VTAB-1k task, spec 04.

  python -m prompt_jax.main --config=configs/spt_vtab.py:deep,mae --workdir=/tmp/spt \
      --config.data.task=dtd --config.init.checkpoint=/path/mae_pretrain_vit_base.pth

arg: 'DEPTH,BACKBONE', DEPTH in deep | shallow (P 20 / 100), BACKBONE in sup21k | mae | mocov3.
Method 'spt' applies its own init (prompt_init.name stays 'default'); set
--config.prompt_init.strategy=random|mean_pooling|max_pooling|kmeans. AdamW, 100 epochs, 10 warm-up
epochs, cosine per update, batch 32, drop path 0.1, head trunc-normal .02 (MoCo .01), wd groups.
"""

from configs import common
from prompt_jax.methods import spt

BACKBONES = {  # init.format, model.pool, head std
    'sup21k': ('npz', 'cls', 0.02),
    'mae': ('mae', 'mean_norm', 0.02),    # norm(mean(x[:,1:])) including prompts
    'mocov3': ('mocov3', 'cls', 0.01),
}


def get_config(arg: str = 'deep,mae'):
  depth, _, backbone = arg.partition(',')
  backbone = backbone or 'mae'
  if depth not in ('deep', 'shallow') or backbone not in BACKBONES:
    raise ValueError(f"arg must be 'deep|shallow,{'|'.join(BACKBONES)}', got {arg!r}")
  deep = depth == 'deep'
  c = common.base()
  c.method = 'spt'
  fmt, pool, std = BACKBONES[backbone]
  c.init.format = fmt
  c.model.update(pool=pool, drop_path=0.1, head_init='trunc_normal', head_init_std=std,
                 head_bias_init=0.0)
  c.data.update(normalization='imagenet', resize='bicubic', augment=False)
  c.vpt = common.vpt_section(num_prompts=20 if deep else 100, deep=deep, dropout=0.0)
  c.prompt_init.update(spt.section(strategy='kmeans', fraction=0.3, seed=0).to_dict())
  c.train.update(optimizer='adamw', lr=1e-3, lr_scale_by_batch=False, batch_size=32, epochs=100,
                 warmup_epochs=10, warmup_init=1e-8, min_lr=1e-9, schedule_per='step',
                 cosine_shift=False, wd=1e-4, wd_head=1e-4)
  return common.finalize(c)
