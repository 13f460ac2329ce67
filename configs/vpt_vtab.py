"""VPT (shallow/deep) on one VTAB-1k task, docs/specs/01-vit-vtab-vpt.md recipe.

  python -m prompt_jax.main --config=configs/vpt_vtab.py:task=dmlab --workdir=/tmp/vpt \
      --config.init.checkpoint=/path/ViT-B_16.npz --config.vpt.num_prompts=100
  ... --config=configs/vpt_vtab.py:task=dmlab,deep=False         # VPT-shallow

SGD momentum 0.9, lr = base·batch/256, coupled wd (none on head bias), batch 128, 100 epochs,
10 warm-up epochs, cosine stepped per epoch. VPT feeds [0,1] then ImageNet mean/std. Prompt dropout
0.1 deep / 0.0 shallow (the release's published VTAB commands). The base lr / wd come from VPT's
grid, selected on val200: `prompt-jax-sweep --config=configs/vpt_vtab.py --search=vpt`.
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100', deep=True)
  c = common.base()
  c.method = 'vpt'
  c.data.task = a.task
  c.vpt = common.vpt(num_prompts=50, deep=a.deep, dropout=0.1 if a.deep else 0.0)
  c.data.normalization = 'imagenet'
  c.train.update(optimizer='sgd', batch_size=128, lr=0.25, wd=1e-3, lr_scale_by_batch=True)
  return common.finalize(c)
