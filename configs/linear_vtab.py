"""Linear probe on one VTAB-1k task: only the head trains (same trainer, `method='linear'`)."""

from configs import common


def get_config():
  c = common.base()
  c.method = 'linear'
  c.data.normalization = 'imagenet'
  c.train.update(optimizer='sgd', batch_size=128, lr=1.0, wd=0.0)
  return common.finalize(c)
