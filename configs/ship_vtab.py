"""SHIP on one VTAB-1k task, docs/specs/02-ship.md recipe (per-task lr / wd / threshold / P from
the spec table).

  python -m prompt_jax.main --config=configs/ship_vtab.py:task=cifar100 --workdir=/tmp/ship \
      --config.init.checkpoint=/path/ViT-B_16.npz

`task=` (canonical VTAB names or the table's short ones: pets, camelyon, ...) sets data.task and
that task's row of RECIPES; a --config.data.task that disagrees is an error.

AdamW (eps 1e-8), 10 warm-up epochs from 1e-6, cosine (on the absolute epoch, timm-style) to 1e-5
over 100 epochs, stepped per epoch one epoch late as the release (train.py calls timm's
`lr_scheduler.step(epoch)` after epoch `epoch`: epochs 0 and 1 train at 1e-6, epoch e >= 1 at
lr(e-1); `--config.train.schedule_lag_epochs=0` gives epoch e lr(e)); wd on tensors of rank >= 2
(timm's create_optimizer: no decay for 1-D tensors and biases); batch 64, full batches only (the
release's drop_last=True); drop path 0.1; inputs normalised with mean=std=0.5; the release's
`direct_resize=True`: bicubic resize straight to 224×224 (PIL-like antialiasing), no crop; new
head N(0, .02) (timm's trunc_normal_(std=.02), cut-offs ±2 absolute), zero bias. Train on
train800val200.
The release's shipped affinity / prototype files: --config.ship.affinity_path=.../affinity.npy
--config.ship.prototypes_path=.../prototype_200_clusters.npy (see prompt_jax/methods/ship.py).
Evaluated every epoch on 'val200' and 'test' with val_split='val200':
  - "best epoch (selected on test)" = max over epochs of the test accuracy (the paper's number);
  - "val-selected" = test accuracy at the epoch with the best val200 accuracy (honest protocol).
Note: val200 is part of train800val200 here, so val selection is optimistic; for a clean split use
--config.data.train_split=train800.
"""

from prompt_jax.configs import common


def _row(lr: float, wd: float, threshold: float, num_prompts: int) -> dict[str, float]:
  return {'train.lr': lr, 'train.wd': wd, 'ship.threshold': threshold,
          'ship.num_prompts': num_prompts}


# The per-task hyperparameters of docs/specs/02-ship.md.
RECIPES = {
    'cifar100': _row(lr=1e-3, wd=1e-3, threshold=.93, num_prompts=50),
    'caltech101': _row(lr=1e-3, wd=0.0, threshold=.95, num_prompts=200),
    'dtd': _row(lr=1e-3, wd=1e-3, threshold=.98, num_prompts=50),
    'oxford_flowers102': _row(lr=1e-3, wd=1e-4, threshold=.95, num_prompts=100),
    'oxford_iiit_pet': _row(lr=1e-3, wd=1e-2, threshold=.97, num_prompts=5),
    'svhn': _row(lr=.25, wd=1e-2, threshold=.97, num_prompts=50),
    'sun397': _row(lr=1e-3, wd=1e-4, threshold=.95, num_prompts=10),
    'patch_camelyon': _row(lr=1e-3, wd=1e-3, threshold=.98, num_prompts=30),
    'eurosat': _row(lr=.05, wd=0.0, threshold=.97, num_prompts=50),
    'resisc45': _row(lr=.05, wd=1e-3, threshold=.98, num_prompts=30),
    'diabetic_retinopathy': _row(lr=1.0, wd=1e-2, threshold=.96, num_prompts=50),
    'clevr_count': _row(lr=1e-3, wd=0.0, threshold=.97, num_prompts=50),
    'clevr_dist': _row(lr=1e-3, wd=1e-2, threshold=.95, num_prompts=50),
    'dmlab': _row(lr=1e-3, wd=1e-4, threshold=.95, num_prompts=200),
    'kitti': _row(lr=.05, wd=1e-3, threshold=.97, num_prompts=50),
    'dsprites_loc': _row(lr=1e-3, wd=1e-4, threshold=.98, num_prompts=200),
    'dsprites_ori': _row(lr=.05, wd=1e-3, threshold=.95, num_prompts=30),
    'smallnorb_azi': _row(lr=1e-3, wd=1e-4, threshold=.98, num_prompts=50),
    'smallnorb_ele': _row(lr=1e-3, wd=0.0, threshold=.96, num_prompts=50),
}


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100')
  c = common.base()
  c.method = 'ship'
  c.seed = 1
  c.model.update(drop_path=0.1, head_init='normal', head_init_std=0.02, head_bias_init=0.0)
  c.data.update(normalization='half', resize='bicubic', crop_pct=1.0, antialias=True,
                train_split='train800val200', eval_splits=('val200', 'test'), val_split='val200')
  c.train.update(optimizer='adamw', eps=1e-8, batch_size=64, lr_scale_by_batch=False,
                 epochs=100, warmup_epochs=10, warmup_init=1e-6, min_lr=1e-5,
                 schedule_per='epoch', cosine_shift=False, schedule_lag_epochs=1,
                 eval_every_epochs=1, drop_last=True)
  c.ship = common.ship()
  common.apply_recipe(c, a.task, RECIPES)
  return common.finalize(c)
