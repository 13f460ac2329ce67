"""Full fine-tuning on one VTAB-1k task: every parameter trains (`method='full'`)."""

from configs import common


def get_config():
  c = common.base()
  c.method = 'full'
  c.data.normalization = 'imagenet'
  c.model.drop_path = 0.1
  c.train.update(optimizer='adamw', batch_size=64, lr=1e-3, wd=1e-4, schedule_per='step')
  c.model.update(head_init='trunc_normal', head_bias_init=0.0)
  return common.finalize(c)
