"""SHIP on one VTAB-1k task, spec 02 recipe (per-task lr / wd / threshold / P from the spec table).

  python -m prompt_jax.main --config=configs/ship_vtab.py:cifar100 --workdir=/tmp/ship \
      --config.init.checkpoint=/path/ViT-B_16.npz

The argument is the task (canonical VTAB names or the table's short ones: pets, camelyon, ...): it
sets data.task and that task's hyperparameters; a --config.data.task that disagrees is an error.

AdamW (eps 1e-8), 10 warm-up epochs from 1e-6, cosine (on the absolute epoch, timm-style) to 1e-5
over 100 epochs, stepped per epoch; batch 64; drop path 0.1; inputs normalised with mean=std=0.5;
bicubic resize + center crop; new head trunc-normal .02, zero bias. Train on train800val200.
Evaluated every epoch on 'val200' and 'test' with val_split='val200':
  - "best epoch (selected on test)" = max over epochs of the test accuracy (the paper's number);
  - "val-selected" = test accuracy at the epoch with the best val200 accuracy (honest protocol).
Note: val200 is part of train800val200 here, so val selection is optimistic; for a clean split use
--config.data.train_split=train800.
"""

from configs import common

# task: (lr, wd, threshold, P) from spec 02.
TASKS = {
    'cifar100': (1e-3, 1e-3, .93, 50), 'caltech101': (1e-3, 0.0, .95, 200),
    'dtd': (1e-3, 1e-3, .98, 50), 'oxford_flowers102': (1e-3, 1e-4, .95, 100),
    'oxford_iiit_pet': (1e-3, 1e-2, .97, 5), 'svhn': (.25, 1e-2, .97, 50),
    'sun397': (1e-3, 1e-4, .95, 10),
    'patch_camelyon': (1e-3, 1e-3, .98, 30), 'eurosat': (.05, 0.0, .97, 50),
    'resisc45': (.05, 1e-3, .98, 30), 'diabetic_retinopathy': (1.0, 1e-2, .96, 50),
    'clevr_count': (1e-3, 0.0, .97, 50), 'clevr_dist': (1e-3, 1e-2, .95, 50),
    'dmlab': (1e-3, 1e-4, .95, 200), 'kitti': (.05, 1e-3, .97, 50),
    'dsprites_loc': (1e-3, 1e-4, .98, 200), 'dsprites_ori': (.05, 1e-3, .95, 30),
    'smallnorb_azi': (1e-3, 1e-4, .98, 50), 'smallnorb_ele': (1e-3, 0.0, .96, 50),
}


def get_config(arg: str = 'cifar100'):
  from prompt_jax.data import vtab  # pylint: disable=g-import-not-at-top
  task = vtab.canonical_task(arg or 'cifar100')  # short names work too: pets, camelyon, ...
  lr, wd, threshold, p = TASKS[task]
  c = common.base()
  c.method = 'ship'
  c.seed = 1
  c.model.update(drop_path=0.1, head_init='trunc_normal', head_init_std=0.02, head_bias_init=0.0)
  c.data.update(task=task, normalization='half', resize='bicubic', crop_pct=0.875,
                train_split='train800val200', eval_splits=('val200', 'test'), val_split='val200')
  c.train.update(optimizer='adamw', lr=lr, wd=wd, eps=1e-8, batch_size=64, lr_scale_by_batch=False,
                 epochs=100, warmup_epochs=10, warmup_init=1e-6, min_lr=1e-5,
                 schedule_per='epoch', cosine_shift=False, eval_every_epochs=1)
  from prompt_jax.methods import ship  # pylint: disable=g-import-not-at-top
  c.ship = ship.section(num_prompts=p, threshold=threshold, recipe_task=task)
  return common.finalize(c)
