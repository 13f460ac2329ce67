"""Linear probe on one VTAB-1k task: only the head trains (same trainer, `method='linear'`).

  python -m prompt_jax.main --config=configs/linear_vtab.py:task=dtd --workdir=/tmp/linear \
      --config.init.checkpoint=/path/ViT-B_16.npz
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100')
  c = common.base()
  c.method = 'linear'
  c.data.task = a.task
  c.data.normalization = 'imagenet'
  c.train.update(optimizer='sgd', batch_size=128, lr=1.0, wd=0.0)
  return common.finalize(c)
