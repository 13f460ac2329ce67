"""VPT (shallow/deep) on one VTAB-1k task, spec 01 recipe.

  python -m prompt_jax.main --config=configs/vpt_vtab.py --workdir=/tmp/vpt \
      --config.data.task=dmlab --config.init.checkpoint=/path/ViT-B_16.npz --config.vpt.num_prompts=100

SGD momentum 0.9, lr = base·batch/256, coupled wd (none on head bias), batch 128, 100 epochs,
10 warm-up epochs, cosine stepped per epoch. VPT feeds [0,1] then ImageNet mean/std.
Pick base lr / wd from the grid with `--config.data.train_split=train800 --config.data.eval_splits=val200`.
"""

from configs import common


def get_config(arg: str = 'deep'):
  c = common.base()
  c.method = 'vpt'
  c.vpt = common.vpt_section(num_prompts=50, deep=(arg != 'shallow'),
                             dropout=0.1 if arg != 'shallow' else 0.0)
  c.data.normalization = 'imagenet'
  c.train.update(optimizer='sgd', batch_size=128, lr=0.25, wd=1e-3, lr_scale_by_batch=True)
  return common.finalize(c)
