"""Full fine-tuning on one VTAB-1k task: every parameter trains (`method='full'`).

  python -m prompt_jax.main --config=configs/full_vtab.py:task=dtd --workdir=/tmp/full \
      --config.init.checkpoint=/path/ViT-B_16.npz
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100')
  c = common.base()
  c.method = 'full'
  c.data.task = a.task
  c.data.normalization = 'imagenet'
  c.model.update(drop_path=0.1, head_init='trunc_normal', head_bias_init=0.0)
  c.train.update(optimizer='adamw', batch_size=64, lr=1e-3, wd=1e-4, schedule_per='step')
  return common.finalize(c)
